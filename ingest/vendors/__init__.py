"""Vendor profiles: one module per vendor or format, each with a pure ``parse(raw) -> Parsed``.

``PROFILES`` maps the profile names of the configuration to their ``Profile``; ``generic`` is
built from its field mapping by ``generic.make_profile``.
"""

from __future__ import annotations

from ingest.vendors import binance, coinbase, gold_api, metals_api, oanda, twelvedata
from ingest.vendors.base import Kind, Parsed, Profile, Quote

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        coinbase.PROFILE,
        binance.PROFILE,
        oanda.PROFILE,
        twelvedata.PROFILE,
        gold_api.PROFILE,
        metals_api.PROFILE,
    )
}
PROFILE_NAMES = (*PROFILES, "generic")

__all__ = ["PROFILES", "PROFILE_NAMES", "Kind", "Parsed", "Profile", "Quote"]
