"""The refresh policy: when to refresh, when to withdraw, how to back off."""

from __future__ import annotations

import pytest

from control_plane.tokens.schedule import Minted, RefreshPolicy


def test_refresh_falls_in_the_jittered_window_before_withdrawal() -> None:
    policy = RefreshPolicy(fraction=0.9, jitter=0.04)
    minted = Minted("t", issued_at=100.0, expires_at=110.0)
    assert policy.refresh_at(minted, 0.0) == pytest.approx(109.0)
    assert policy.refresh_at(minted, 0.999) == pytest.approx(108.6, abs=0.01)
    # 5 % of 10 s is below the 30 s margin: withdrawn half a second before expiry.
    assert policy.withdraw_at(minted) == pytest.approx(109.5)
    assert policy.refresh_at(minted, 0.0) < policy.withdraw_at(minted)


def test_long_tokens_are_withdrawn_the_margin_before_expiry() -> None:
    policy = RefreshPolicy(margin=30.0)
    day = Minted("t", issued_at=0.0, expires_at=86_400.0)
    assert policy.withdraw_at(day) == 86_370.0


def test_backoff_doubles_up_to_the_ceiling_with_equal_jitter() -> None:
    policy = RefreshPolicy(backoff_base=1.0, backoff_max=8.0)
    assert [policy.backoff(n, 1.0) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.backoff(3, 0.0) == 2.0  # at least half the step


@pytest.mark.parametrize(("fraction", "jitter"), [(0.5, 0.6), (0.96, 0.01)])
def test_impossible_policies_are_refused(fraction: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="token_refresh_fraction"):
        RefreshPolicy(fraction=fraction, jitter=jitter)


def test_a_minted_token_never_prints_its_value() -> None:
    minted = Minted("secret-token-value", issued_at=1.0, expires_at=2.0)
    assert "secret-token-value" not in repr(minted)
    assert "secret-token-value" not in str(minted)


def test_settings_give_the_policy_and_refuse_an_impossible_one() -> None:
    from control_plane.app.tokens import refresh_policy
    from control_plane.problems import RegistryError
    from control_plane.settings import Settings, load_settings

    settings = load_settings(
        {
            "INTEGRATION_SERVICE_TOKEN_REFRESH_FRACTION": "0.8",
            "INTEGRATION_SERVICE_TOKEN_BACKOFF_MAX": "5",
        }
    )
    policy = refresh_policy(settings)
    assert (policy.fraction, policy.backoff_max, policy.margin) == (0.8, 5.0, 30.0)
    with pytest.raises(RegistryError, match="invalid settings"):
        refresh_policy(Settings(token_refresh_fraction=0.99))
