"""One member, four platforms (issue 5): a level set through Scrip reads the same through
Yuko, Omneo, Capillary and the native API, and goes away when the sweep passes its
expiry (R15, R20)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from tests.api.helpers import (
    activity,
    criterion,
    iso,
    ladder,
    level,
    only_ladder,
    program,
    sweep,
    utc_now,
)
from tests.conftest import Api
from tests.dialects.conftest import validate


def _basic(api: Api) -> dict[str, str]:
    token = base64.b64encode(f"{api.key.key_id}:{api.key.secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _get(api: Api, path: str, **kwargs: Any) -> Any:
    response = api.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_level_set_through_scrip_reads_the_same_everywhere_and_expires_with_the_sweep(
    api: Api,
) -> None:
    """R20: Scrip's PUT participant state = a pinned assignment with an expiry; every
    dialect and the native API show gold until the sweep passes ``expires_at``."""
    p = program(api)
    ladder(
        api,
        p["id"],
        {
            "key": "status",
            "name": "Loyalty Status",
            "levels": [
                level("bronze", 1, is_floor=True),
                level("silver", 2, criterion("points_earned", 500), earn_multiplier="1.5"),
                level("gold", 3, criterion("points_earned", 1000), earn_multiplier="2.0"),
            ],
        },
    )
    activity(api, "m-cross", points=650, at=iso(utc_now() - timedelta(days=1)))
    member = _get(api, "/v1/members/m-cross")
    expires = utc_now() + timedelta(days=2)

    response = api.client.put(
        f"/compat/scrip/v1/participants/{member['uuid']}/state/tiers/status",
        params={"program_id": p["uuid"]},
        json={"level": "gold", "expires_at": iso(expires)},
        headers={"X-API-Key": api.key.secret},
    )
    assert response.status_code == 200, response.text
    assert validate("scrip_participant_tier", response.json())["level"] == "gold"

    native = only_ladder(api, "m-cross")
    assert native["current_level"]["key"] == "gold"
    assert native["assignment"]["mode"] == "pin"
    assert native["assignment"]["expires_at"] == iso(expires)

    yuko = validate(
        "yuko_customer_tier",
        _get(api, "/compat/yuko/api/v1/public/customers/tier", params={"customer_id": "m-cross"}),
    )
    assert yuko["data"]["current_tier"]["name"] == "Gold"
    assert yuko["data"]["next_tier"] is None

    omneo = validate(
        "omneo_profile_tiers", _get(api, f"/compat/omneo/api/v3/profiles/{member['uuid']}/tiers")
    )
    assert omneo["data"]["current_tier"]["handle"] == "gold"
    assert omneo["data"]["assigned_at"] is not None

    response = api.client.get(
        f"/compat/capillary/v2/customers/{member['id']}/tierDetails", headers=_basic(api)
    )
    assert response.status_code == 200, response.text
    capillary = validate("capillary_v2_tier_details", response.json())
    [tiers] = capillary["programTiers"]
    assert tiers["currentTierName"] == "Gold"
    assert tiers["nextTierSerialNumber"] == -1

    # The sweep after expires_at removes the assignment and re-evaluates: 650 -> silver.
    summary = sweep(api, expires + timedelta(seconds=1))
    assert summary["changes"].get("expired") == 1
    native = only_ladder(api, "m-cross")
    assert native["current_level"]["key"] == "silver"
    assert native["assignment"] is None
    yuko = _get(api, "/compat/yuko/api/v1/public/customers/tier", params={"customer_id": "m-cross"})
    assert yuko["data"]["current_tier"]["name"] == "Silver"
    response = api.client.get(
        f"/compat/scrip/v1/participants/{member['uuid']}/state/tiers/status",
        params={"program_id": p["uuid"]},
        headers={"X-API-Key": api.key.secret},
    )
    assert response.status_code == 200, response.text
    assert response.json()["level"] == "silver"
