"""The loader: merging files into one generation, and where each problem is."""

from __future__ import annotations

import pytest

from mip6ctl import rfc6275
from mip6ctl.config.loader import ConfigError, config_files, load_directory

from .conftest import HA_MIN


def problems(d):
    with pytest.raises(ConfigError) as e:
        load_directory(d)
    return e.value.problems


def test_defaults_are_rfc_values(write):
    gen = load_directory(write({"a.toml": HA_MIN}))
    cfg = gen.config
    assert cfg.ha.max_binding_lifetime == rfc6275.MAX_LIFETIME == 262140
    assert cfg.cn.max_binding_lifetime == rfc6275.MAX_RR_BINDING_LIFETIME == 420
    assert cfg.ha.default_action == "deny"
    assert cfg.kernel.tunnel == "auto" and cfg.kernel.signalling == "auto"


def test_mn_timer_defaults(write):
    d = write(
        {
            "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
            'home_agent = "dhaad"\ninterfaces = [{ name = "eth0" }]\n'
        }
    )
    t = load_directory(d).config.mn.timers
    assert t.initial_bindack_timeout_first_registration == 1.5
    assert t.initial_bindack_timeout == 1.0
    assert t.max_bindack_timeout == 32.0
    assert t.initial_solicit_timer == 3.0


def test_arrays_of_tables_concatenate_across_files(write):
    d = write(
        {
            "10-node.toml": HA_MIN + '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n',
            "20-a.toml": '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::101"\n',
            "30-b.toml": '[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::102"\n',
        }
    )
    gen = load_directory(d)
    assert [str(m.home_address) for m in gen.config.ha.mobile_nodes] == [
        "2001:db8:1::100",
        "2001:db8:1::101",
        "2001:db8:1::102",
    ]
    assert gen.where(("ha", "mobile_nodes", 2, "home_address")) == f"{d / '30-b.toml'}:2"


def test_error_in_third_file_element_points_to_that_file(write):
    d = write(
        {
            "10-node.toml": HA_MIN + '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n',
            "20-a.toml": '\n\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::101"\n'
            "\n[[ha.mobile_nodes]]\nhome_address = 7\n",
        }
    )
    (p,) = problems(d)
    assert (p.file, p.line, p.key) == (str(d / "20-a.toml"), 7, "ha.mobile_nodes[2].home_address")


def test_same_key_in_two_files_names_both(write):
    d = write({"a.toml": HA_MIN, "b.toml": '[node]\nrole = "cn"\n'})
    (p,) = problems(d)
    assert p.kind == "conflict"
    assert (p.file, p.line, p.key) == (str(d / "b.toml"), 2, "node.role")
    assert f"{d / 'a.toml'}:2" in p.message


def test_inline_array_in_two_files_is_a_conflict(write):
    d = write({"a.toml": HA_MIN, "b.toml": '[ha]\ninterfaces = ["home1"]\n'})
    (p,) = problems(d)
    assert p.kind == "conflict" and p.key == "ha.interfaces"


def test_all_syntax_errors_at_once(write):
    d = write({"a.toml": "[node\n", "b.toml": 'x = "unterminated\n'})
    ps = problems(d)
    assert [(p.kind, p.line) for p in ps] == [("syntax", 1), ("syntax", 1)]
    assert {p.file for p in ps} == {str(d / "a.toml"), str(d / "b.toml")}


def test_not_utf8(write):
    d = write({"a.toml": b'[node]\nrole = "\xff"\n'})
    (p,) = problems(d)
    assert (p.kind, p.line) == ("syntax", 2)


def test_hidden_and_backup_files_are_ignored(write):
    d = write(
        {"a.toml": HA_MIN, ".a.toml.swp": "garbage", ".#a.toml": "garbage", "a.toml~": "x"}
    )
    assert [p.name for p in config_files(d)] == ["a.toml"]
    load_directory(d)


def test_lexical_order(write):
    d = write({"b.toml": "", "a.toml": HA_MIN, "10.toml": ""})
    assert [p.name for p in config_files(d)] == ["10.toml", "a.toml", "b.toml"]


def test_missing_and_empty_directory(tmp_path):
    (p,) = problems(tmp_path / "nope")
    assert p.kind == "io" and "does not exist" in p.message
    (tmp_path / "empty").mkdir()
    (p,) = problems(tmp_path / "empty")
    assert p.kind == "io" and "no *.toml" in p.message


def test_digest_follows_content(write, tmp_path):
    d1 = write({"a.toml": HA_MIN}, tmp_path / "one")
    d2 = write({"a.toml": HA_MIN}, tmp_path / "two")
    assert load_directory(d1).digest == load_directory(d2).digest
    (d2 / "a.toml").write_text(HA_MIN + "# comment\n")
    assert load_directory(d1).digest != load_directory(d2).digest
    (d2 / "a.toml").write_text(HA_MIN)
    (d2 / "b.toml").write_text("")
    assert load_directory(d1).digest != load_directory(d2).digest


def test_missing_node_section(write):
    (p,) = problems(write({"a.toml": "[cn]\nroute_optimization = false\n"}))
    assert p.key == "node" and p.message == "required key is missing"


def test_strict_types(write):
    d = write({"a.toml": HA_MIN.replace('["home0"]', '["home0"]\nmax_binding_lifetime = 3600.0')})
    (p,) = problems(d)
    assert p.key == "ha.max_binding_lifetime" and "integer" in p.message


def test_float_timers_accept_integers(write):
    d = write(
        {
            "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
            'home_agent = "2001:db8:1::1"\ninterfaces = [{ name = "eth0" }]\n'
            "[mn.timers]\ninitial_bindack_timeout = 2\n"
        }
    )
    assert load_directory(d).config.mn.timers.initial_bindack_timeout == 2.0


def test_address_given_as_number_is_refused(write):
    d = write({"a.toml": HA_MIN + "\n[[ha.mobile_nodes]]\nhome_address = 1\n"})
    (p,) = problems(d)
    assert "as a string" in p.message


def test_zone_index_is_refused(write):
    d = write({"a.toml": HA_MIN.replace('["home0"]', '["home0"]\naddress = "fe80::1%home0"')})
    (p,) = problems(d)
    assert p.key == "ha.address" and "zone" in p.message


@pytest.mark.parametrize(
    ("extra", "key", "text"),
    [
        ('[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::"\n', "ha.mobile_nodes[0].home_address",
         "subnet-router anycast"),
        ('[[ha.mobile_nodes]]\nhome_address = "fe80::1"\n', "ha.mobile_nodes[0].home_address",
         "link-local"),
        ('[[ha.mobile_nodes]]\nhome_address = "ff02::1"\n', "ha.mobile_nodes[0].home_address",
         "multicast"),
        ('[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::1"\nmobile_network_prefixes = '
         '["2001:db8:5::/64"]\n', "ha.mobile_nodes[0].mobile_network_prefixes",
         "accept_mobile_routers"),
    ],
)
def test_home_agent_consistency(write, extra, key, text):
    (p,) = problems(write({"a.toml": HA_MIN + "\n" + extra}))
    assert p.key == key and text in p.message, p


def test_require_ipsec(write):
    d = write(
        {
            "a.toml": HA_MIN.replace('["home0"]', '["home0"]\nrequire_ipsec = true')
            + '\n[[ha.mobile_nodes]]\nhome_address = "2001:db8:1::100"\n'
        }
    )
    (p,) = problems(d)
    assert p.key == "ha.mobile_nodes[0]" and "require_ipsec" in p.message


def test_mn_home_agent_off_prefix_and_timer_order(write):
    d = write(
        {
            "a.toml": '[node]\nrole = "mn"\n[mn]\nhome_address = "2001:db8:1::100/64"\n'
            'home_agent = "2001:db8:2::1"\ninterfaces = [{ name = "eth0" }, { name = "eth0" }]\n'
            "[mn.timers]\ninitial_bindack_timeout = 40\n"
        }
    )
    got = {(p.line, p.key) for p in problems(d)}
    assert got == {
        (5, "mn.home_agent"),
        (6, "mn.interfaces[1]"),
        (8, "mn.timers.initial_bindack_timeout"),
    }
