"""Timeline maths: percentiles, phases, time to detect/recover, stability, SLI window."""

from __future__ import annotations

import pytest

from gameday import timeline as tl
from gameday.timeline import RequestSample, Timeline


def sample(started, latency=0.01, outcome="ok", status=200, error=None, users=20):
    return RequestSample(started=started, latency_s=latency, op="create_user", status=status,
                         outcome=outcome, error=error, users=users)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert tl.percentile(values, 50) == 50
    assert tl.percentile(values, 99) == 99
    assert tl.percentile(values, 100) == 100
    assert tl.percentile([7.0], 99) == 7.0
    assert tl.percentile([], 50) is None


def make_timeline(*events):
    timeline = Timeline()
    for t, kind, detail in events:
        timeline.add(t, kind, **detail)
    return timeline


def standard():
    # load 0, inject 10, breach 11, pending 12, firing 14 (poll) and 15.5 (webhook),
    # runbook step 16, fault removed 40, regained 43, resolved 50.
    return make_timeline(
        (0.0, tl.LOAD_STARTED, {}),
        (10.0, tl.FAULT_INJECTED, {}),
        (11.0, tl.SLI_BREACH, {}),
        (12.0, tl.ALERT_PENDING, {"alert": "RedisDown", "source": "prometheus"}),
        (14.0, tl.ALERT_FIRING, {"alert": "RedisDown", "source": "prometheus"}),
        (15.5, tl.ALERT_FIRING, {"alert": "RedisDown", "source": "webhook"}),
        (16.0, tl.RUNBOOK_STEP, {"step": "diagnose"}),
        (40.0, tl.FAULT_REMOVED, {}),
        (43.0, tl.STEADY_STATE_REGAINED, {}),
        (50.0, tl.ALERT_RESOLVED, {"alert": "RedisDown", "source": "prometheus"}),
    )


def test_time_to_detect_notify_and_recover():
    times = tl.recovery_times(standard(), ["RedisDown"])
    assert times.time_to_detect == pytest.approx(4.0)
    assert times.time_to_notify == pytest.approx(5.5)
    assert times.time_to_recover == pytest.approx(33.0)
    assert times.recovery_after_fault_end == pytest.approx(3.0)
    assert times.breached


def test_alerts_before_injection_do_not_count_as_detection():
    timeline = make_timeline(
        (5.0, tl.ALERT_FIRING, {"alert": "RedisDown", "source": "prometheus"}),
        (10.0, tl.FAULT_INJECTED, {}),
    )
    assert tl.recovery_times(timeline, ["RedisDown"]).time_to_detect is None


def test_unexpected_alerts_do_not_count_as_detection():
    timeline = make_timeline(
        (10.0, tl.FAULT_INJECTED, {}),
        (12.0, tl.ALERT_FIRING, {"alert": "Other", "source": "prometheus"}),
    )
    assert tl.recovery_times(timeline, ["RedisDown"]).time_to_detect is None


def test_no_breach_means_nothing_to_recover():
    timeline = make_timeline((0, tl.LOAD_STARTED, {}), (10.0, tl.FAULT_INJECTED, {}),
                             (40.0, tl.FAULT_REMOVED, {}))
    times = tl.recovery_times(timeline, [])
    assert times.time_to_recover == 0.0 and not times.breached
    assert tl.phase_bounds(timeline, 60.0) == {"before": (0, 10.0), "during": (10.0, 40.0),
                                               "after": (40.0, 60.0)}


def test_never_recovered():
    timeline = make_timeline((0, tl.LOAD_STARTED, {}), (10.0, tl.FAULT_INJECTED, {}),
                             (11.0, tl.SLI_BREACH, {}), (40.0, tl.FAULT_REMOVED, {}))
    assert tl.recovery_times(timeline, []).time_to_recover is None
    assert tl.phase_bounds(timeline, 60.0)["during"] == (10.0, 60.0)


def test_relapse_after_regained_means_not_recovered_yet():
    timeline = standard()
    timeline.add(45.0, tl.SLI_BREACH, relapse=True)
    assert tl.recovery_times(timeline, ["RedisDown"]).time_to_recover is None
    timeline.add(52.0, tl.STEADY_STATE_REGAINED)
    assert tl.recovery_times(timeline, ["RedisDown"]).time_to_recover == pytest.approx(42.0)


def test_phase_bounds_during_lasts_until_fault_end_or_recovery():
    assert tl.phase_bounds(standard(), 70.0) == {
        "before": (0.0, 10.0), "during": (10.0, 43.0), "after": (43.0, 70.0)}
    # An instantaneous fault (removed at injection) recovering later:
    timeline = make_timeline((0, tl.LOAD_STARTED, {}), (10.0, tl.FAULT_INJECTED, {}),
                             (10.0, tl.FAULT_REMOVED, {}), (10.5, tl.SLI_BREACH, {}),
                             (18.0, tl.STEADY_STATE_REGAINED, {}))
    assert tl.phase_bounds(timeline, 30.0)["during"] == (10.0, 18.0)


def test_phase_bounds_without_injection():
    timeline = make_timeline((2.0, tl.LOAD_STARTED, {}))
    assert tl.phase_bounds(timeline, 9.0)["before"] == (2.0, 9.0)


def test_phase_stats_per_phase():
    samples = [sample(1.0, 0.010), sample(2.0, 0.020), sample(3.0, 0.030),
               sample(11.0, 5.0, "indeterminate", None, "timeout"),
               sample(12.0, 0.001, "failed", 503), sample(13.0, 0.2),
               sample(50.0, 0.015)]
    bounds = tl.phase_bounds(standard(), 60.0)
    stats = {name: tl.phase_stats(samples, a, b) for name, (a, b) in bounds.items()}
    assert stats["before"].requests == 3 and stats["before"].success_rate == 1.0
    assert stats["before"].p50_ms == pytest.approx(20.0)
    assert stats["before"].p99_ms == pytest.approx(30.0)
    during = stats["during"]
    assert (during.requests, during.ok, during.failed, during.indeterminate) == (3, 1, 1, 1)
    assert during.success_rate == pytest.approx(1 / 3)
    assert during.error_kinds == {"timeout": 1, "http_503": 1}
    assert during.p99_ms == pytest.approx(200.0)  # latency of ok requests only
    assert stats["after"].requests == 1


def test_empty_phase_has_no_rates():
    stats = tl.phase_stats([], 0, 10)
    assert stats.success_rate is None and stats.p99_ms is None


def test_stability_tracker_needs_a_full_streak():
    tracker = tl.StabilityTracker(stable_s=5)
    assert tracker.observe(20, True) is None
    assert tracker.observe(22, True) is None
    assert tracker.observe(23, False) is None  # streak broken
    assert tracker.observe(24, True) is None
    assert tracker.observe(28, True) is None
    assert tracker.observe(29, True) == 24  # regained at the start of the streak


def test_window_sli_error_rate_p99_and_stall():
    samples = [sample(t, 0.1) for t in range(10)] + [sample(8.5, 0.2, "failed", 502)]
    sli = tl.window_sli(samples, now=10.0, window_s=5, inflight_oldest_age_s=None,
                        stall_after_s=1)
    assert sli.completed == 6 and sli.error_rate == pytest.approx(1 / 6)
    assert not sli.stalled
    stalled = tl.window_sli([], now=10.0, window_s=5, inflight_oldest_age_s=3.0,
                            stall_after_s=1.5)
    assert stalled.stalled and stalled.error_rate is None


def test_per_second_series_and_concurrency():
    samples = [sample(0.1), sample(0.5, outcome="failed", status=500),
               sample(1.2, users=200), sample(1.4, 2.0, users=200)]
    series = tl.per_second_series(samples, 2.0)
    assert series[0]["requests"] == 2 and series[0]["ok"] == 1 and series[0]["failed"] == 1
    assert series[1]["users"] == 200 and series[1]["p99_ms"] == pytest.approx(2000.0)
    levels = tl.by_concurrency(samples)
    assert set(levels) == {20, 200}
    assert levels[20].success_rate == 0.5 and levels[200].success_rate == 1.0


def test_merged_concurrency_sums_time_per_scenario():
    # Two scenarios, each 10 s at 20 users with 1 ok request per second; their clocks
    # overlap (both start at 0), so a naive span would halve the time.
    one = [sample(float(t)) for t in range(11)]
    two = [sample(float(t)) for t in range(11)]
    merged = tl.merge_concurrency([one, two])
    assert merged[20].requests == 22
    assert merged[20].throughput_rps == pytest.approx(22 / 20)
