"""The hub's deafness check (realtime.watchdog): a clock-driven model of what the hub sees."""

from __future__ import annotations

from realtime.watchdog import DeafnessCheck


def test_a_gap_seen_right_after_a_quiet_spell_is_not_deafness() -> None:
    # given a hub that heard its last update 10 s ago (a quiet market)
    check = DeafnessCheck(grace_s=3.0)
    # when the worker has written seq 11 but its broadcast is still in flight at the check
    assert not check.observe(now=10.0, shared_seq=11, mirror_seq=10, last_event=0.0)
    # then the update arrives before the next check, and nothing is rebuilt, ever
    assert not check.observe(now=11.0, shared_seq=11, mirror_seq=11, last_event=10.1)
    assert not check.observe(now=15.0, shared_seq=11, mirror_seq=11, last_event=10.1)


def test_a_hub_that_stays_behind_hearing_nothing_is_deaf_after_the_grace() -> None:
    check = DeafnessCheck(grace_s=3.0)
    assert not check.observe(now=10.0, shared_seq=12, mirror_seq=10, last_event=0.0)
    assert not check.observe(now=11.0, shared_seq=13, mirror_seq=10, last_event=0.0)
    assert not check.observe(now=12.0, shared_seq=14, mirror_seq=10, last_event=0.0)
    assert check.observe(now=13.0, shared_seq=15, mirror_seq=10, last_event=0.0)
    # and once rebuilt, it waits a whole grace period again before deciding anew
    assert not check.observe(now=14.0, shared_seq=16, mirror_seq=10, last_event=13.0)


def test_a_hub_behind_but_hearing_updates_is_not_deaf() -> None:
    # a busy stream: the shared seq is always a little ahead at the instant of the check
    check = DeafnessCheck(grace_s=3.0)
    for second in range(1, 60):
        now = float(second)
        deaf = check.observe(
            now=now, shared_seq=second * 10 + 1, mirror_seq=second * 10, last_event=now - 0.05
        )
        assert not deaf


def test_catching_up_clears_the_suspicion() -> None:
    check = DeafnessCheck(grace_s=3.0)
    assert not check.observe(now=1.0, shared_seq=5, mirror_seq=4, last_event=0.0)
    assert not check.observe(now=2.0, shared_seq=5, mirror_seq=5, last_event=0.0)  # reloaded
    assert not check.observe(now=3.0, shared_seq=6, mirror_seq=5, last_event=0.0)
    assert not check.observe(now=5.0, shared_seq=6, mirror_seq=5, last_event=0.0)
    assert check.observe(now=6.0, shared_seq=6, mirror_seq=5, last_event=0.0)
