"""[metrics]: the endpoint's address is checked before anything opens, every mistake naming metrics.listen."""
import tomllib

import pytest

from pyswitch.config import ConfigError, from_dict, load
from pyswitch.reload import ReloadRefused, plan


def metrics(listen):
    return from_dict({"metrics": {"listen": listen}}).metrics


def test_no_section_no_endpoint():
    assert from_dict({}).metrics is None


@pytest.mark.parametrize("listen, host, port", [
    ("127.0.0.1:9110", "127.0.0.1", 9110),
    ("0.0.0.0:9110", "0.0.0.0", 9110),
    ("[::1]:9110", "::1", 9110),
    ("[2001:db8::1]:1", "2001:db8::1", 1),
    ("192.0.2.1:65535", "192.0.2.1", 65535),
])
def test_listen_takes_an_address_and_a_port(listen, host, port):
    m = metrics(listen)
    assert (m.host, m.port) == (host, port)
    assert m.listen == listen


@pytest.mark.parametrize("listen, message", [
    ("localhost:9110", r"metrics\.listen: 'localhost' is not an IP address \(names are not resolved"),
    ("127.0.0.1", r"metrics\.listen: give ADDRESS:PORT, such as \"127\.0\.0\.1:9110\""),
    ("::1:9110", r"metrics\.listen: give ADDRESS:PORT.*in brackets"),
    ("[127.0.0.1]:9110", r"metrics\.listen: only an IPv6 address goes in brackets \(\"127\.0\.0\.1:9110\"\)"),
    ("127.0.0.1:0", r"metrics\.listen: the port must be from 1 to 65535, got 0"),
    ("127.0.0.1:70000", r"metrics\.listen: the port must be from 1 to 65535, got 70000"),
    ("127.0.0.1:http", r"metrics\.listen: give ADDRESS:PORT"),
    ("224.0.0.1:9110", r"metrics\.listen: 224\.0\.0\.1 is a multicast address"),
    (":9110", r"metrics\.listen: '' is not an IP address"),
    ("127.0.0.1:9110\n", r"metrics\.listen: contains a control character"),
    (9110, r"metrics\.listen: must be a string, got 9110"),
])
def test_a_bad_listen_names_the_key(listen, message):
    with pytest.raises(ConfigError, match=message):
        metrics(listen)


def test_section_mistakes_name_the_key():
    with pytest.raises(ConfigError, match=r"metrics\.listen: missing \(the endpoint's ADDRESS:PORT"):
        from_dict({"metrics": {}})
    with pytest.raises(ConfigError, match=r"metrics\.listn: unknown key; did you mean 'listen'\?"):
        from_dict({"metrics": {"listn": "127.0.0.1:9110"}})
    with pytest.raises(ConfigError, match=r"metrics: must be a table \(\[metrics\]\)"):
        from_dict({"metrics": "127.0.0.1:9110"})
    with pytest.raises(ConfigError, match=r"metrix: unknown key; did you mean 'metrics'\?"):
        from_dict({"metrix": {"listen": "127.0.0.1:9110"}})


def test_a_file_with_the_section_loads(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('[switch]\nname = "m1"\n\n[metrics]\nlisten = "127.0.0.1:9110"\n')
    assert tomllib.loads(path.read_text())["metrics"]["listen"] == "127.0.0.1:9110"
    assert load(path).metrics.listen == "127.0.0.1:9110"


@pytest.mark.parametrize("before, after", [
    (None, "127.0.0.1:9110"), ("127.0.0.1:9110", None), ("127.0.0.1:9110", "127.0.0.1:9111")])
def test_a_reload_cannot_open_move_or_close_the_endpoint(before, after):
    def config(listen):
        return from_dict({"metrics": {"listen": listen}} if listen else {})
    with pytest.raises(ReloadRefused, match=r"metrics\.listen: cannot change while the switch runs"):
        plan(config(before), config(after))
    assert plan(config(after), config(after)).describe() == []
