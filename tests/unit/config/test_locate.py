from mip6ctl.config import locate
from mip6ctl.config.locate import key_lines, line_of

DOC = '''\
# comment with [brackets] and "quotes"
[node]
role = "ha"   # trailing

[ha]
interfaces = [
  "home0",   # a comment
  "home1",
]
"quoted.key" = 'x'
text = """multi [line]
string = still"""
dotted.inner = 1

[[ha.mobile_nodes]]
home_address = "2001:db8:1::100"

[[ha.mobile_nodes]]
home_address = "2001:db8:1::101"
opts = { a = 1, b = { c = [1, 2] } }

[[ha.mobile_nodes.extra]]
x = 1

[ipsec."mn-1"]
protect = ["binding-update"]
list = [{ name = "a" },
        { name = "b" }]
'''


def test_key_lines():
    lines, aot = key_lines(DOC)
    assert lines[("node", "role")] == 3
    assert lines[("ha",)] == 5
    assert lines[("ha", "interfaces")] == 6
    assert lines[("ha", "interfaces", 0)] == 7
    assert lines[("ha", "interfaces", 1)] == 8
    assert lines[("ha", "quoted.key")] == 10
    assert lines[("ha", "text")] == 11
    assert lines[("ha", "dotted", "inner")] == 13
    assert lines[("ha", "mobile_nodes", 0)] == 15
    assert lines[("ha", "mobile_nodes", 0, "home_address")] == 16
    assert lines[("ha", "mobile_nodes", 1, "home_address")] == 19
    # inside a value, keys on their parent's line are left out; line_of finds them
    assert ("ha", "mobile_nodes", 1, "opts", "b") not in lines
    assert line_of(lines, ("ha", "mobile_nodes", 1, "opts", "b", "c", 1)) == 20
    assert lines[("ha", "mobile_nodes", 1, "extra", 0, "x")] == 23
    assert lines[("ipsec", "mn-1", "protect")] == 26
    assert lines[("ipsec", "mn-1", "list", 1)] == 28
    assert line_of(lines, ("ipsec", "mn-1", "list", 1, "name")) == 28
    assert line_of(lines, ("ipsec", "mn-1", "list", 0, "name")) == 27
    assert line_of(lines, ("nowhere",)) is None
    assert ("ha", "string") not in lines
    assert aot == {("ha", "mobile_nodes"), ("ha", "mobile_nodes", 1, "extra")}


def test_scanner_never_raises_on_odd_input():
    for text in ["", "[", "a = ", "[[x]]\n[[x", 'a = "\\u00e9"\n', "a.b.c = [[1], [2]]"]:
        key_lines(text)


def test_scanner_never_hangs_on_unterminated_values():
    for text in ["a = [1", "a = [1, ", "a = {b = 1", "a = [}", 'a = """x', "a = '''x", "[a"]:
        key_lines(text)


class _CountingStr(str):
    """A str that adds up how many characters `count` looked at."""

    looked = 0

    def count(self, sub, start=0, end=None):  # type: ignore[override]
        end = len(self) if end is None else end
        _CountingStr.looked += max(end - start, 0)
        return super().count(sub, start, end)


def test_line_numbers_cost_one_pass_over_the_text():
    # the old scanner counted newlines from the start for every key: quadratic
    text = "[node]\n" + "".join(f"k{i} = {i}\nv{i} = [\n  {i},\n]\n" for i in range(2000))
    _CountingStr.looked = 0
    sc = locate._Scanner(_CountingStr(text))
    sc.document()
    assert len(sc.lines) == 6001
    assert sc.lines[("node", "v1999", 0)] == text.count("\n") - 1
    assert _CountingStr.looked <= len(text)
