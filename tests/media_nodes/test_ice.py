import msgspec
import pytest

from konsil.media_nodes.ice import IceConfigError, ice_servers
from konsil.platform.core.settings import RegionSettings
from tests.conftest import bare_region


def region(*urls: str) -> RegionSettings:
    return bare_region(ice_servers=list(urls))


def test_configured_servers_are_offered_as_one_ice_entry() -> None:
    found = ice_servers(region("turn:relay.eu.example:3478?transport=udp", "turns:relay.eu.example:5349"))
    assert msgspec.to_builtins(found) == [
        {"urls": ["turn:relay.eu.example:3478?transport=udp", "turns:relay.eu.example:5349"]}
    ]


def test_no_servers_configured_offers_none() -> None:
    assert ice_servers(region()) == []


@pytest.mark.parametrize("bad", ["http://relay.example", "turn:", "turn:relay example", "turn:x:3478?transport=sctp"])
def test_a_bad_url_names_the_setting(bad: str) -> None:
    with pytest.raises(IceConfigError, match=r"regions\.eu\.ice_servers"):
        ice_servers(region(bad))
