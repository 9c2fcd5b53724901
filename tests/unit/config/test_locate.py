from mip6ctl.config.locate import key_lines

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
    assert lines[("ha", "mobile_nodes", 1, "opts", "b", "c", 1)] == 20
    assert lines[("ha", "mobile_nodes", 1, "extra", 0, "x")] == 23
    assert lines[("ipsec", "mn-1", "protect")] == 26
    assert lines[("ipsec", "mn-1", "list", 1, "name")] == 28
    assert ("ha", "string") not in lines
    assert aot == {("ha", "mobile_nodes"), ("ha", "mobile_nodes", 1, "extra")}


def test_scanner_never_raises_on_odd_input():
    for text in ["", "[", "a = ", "[[x]]\n[[x", 'a = "\\u00e9"\n', "a.b.c = [[1], [2]]"]:
        key_lines(text)
