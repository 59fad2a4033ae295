"""Local days: UTC moments shifted by the shop's zone, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.domain.shop_days import SECONDS_PER_DAY, ShopDays, known_zone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def utc_day(moment: datetime) -> float:
    return (moment - EPOCH).total_seconds() / SECONDS_PER_DAY


def wall_day(moment: datetime, zone: ZoneInfo) -> float:
    """The moment's wall-clock time in `zone`, as days since 1970-01-01 00:00 (the reference)."""
    local = moment.astimezone(zone).replace(tzinfo=None)
    return (local - datetime(1970, 1, 1)).total_seconds() / SECONDS_PER_DAY


def test_local_two_evening_orders_on_either_side_of_utc_midnight_share_a_day() -> None:
    # given two orders at 7:50 pm and 8:10 pm in New York in summer (23:50 and 00:10 UTC)
    first = datetime(2026, 7, 1, 23, 50, tzinfo=UTC)
    second = first + timedelta(minutes=20)
    days = np.array([utc_day(first), utc_day(second)])
    # when they are read as New York days
    local = ShopDays(NEW_YORK).local(days)
    # then both fall on July 1st, where in UTC they were two days
    assert np.floor(days).tolist() == [20635.0, 20636.0]
    assert np.floor(local).tolist() == [20635.0, 20635.0]


def test_local_days_across_daylight_saving_changes_match_the_wall_clock() -> None:
    # given moments every 7 hours through 2026, across both New York changes of offset
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(hours=7 * k) for k in range(1300)]
    days = np.array([utc_day(m) for m in moments])
    # when shifted to New York days
    local = ShopDays(NEW_YORK).local(days)
    # then each is the moment's wall-clock time there, to the microsecond
    expected = np.array([wall_day(m, NEW_YORK) for m in moments])
    assert np.abs(local - expected).max() * SECONDS_PER_DAY < 1e-3


def test_local_change_is_found_to_the_second() -> None:
    # given the seconds either side of the 2026 spring change (07:00 UTC on March 8th)
    change = datetime(2026, 3, 8, 7, tzinfo=UTC)
    days = np.array([utc_day(change - timedelta(seconds=1)), utc_day(change)])
    # when shifted
    local = ShopDays(NEW_YORK).local(days)
    # then the first is still on -5 hours (01:59:59) and the second on -4 (03:00:00)
    offsets = np.round((local - days) * SECONDS_PER_DAY)
    assert offsets.tolist() == [-5 * 3600, -4 * 3600]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.datetimes(
            min_value=datetime(2000, 1, 1),
            max_value=datetime(2040, 1, 1),
            timezones=st.just(UTC),
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from(["America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Europe/Dublin"]),
)
def test_utc_undoes_local_for_any_moment(moments: list[datetime], name: str) -> None:
    # given any moments and a zone (Lord Howe changes by half an hour, Dublin's winter is DST)
    zone = ZoneInfo(name)
    days = np.array([utc_day(m) for m in moments])
    clock = ShopDays(zone)
    # when shifted to local days and back
    local = clock.local(days)
    # then local days are the wall clock, and the way back gives the moments again, except a
    # repeated wall-clock hour, which is read with the offset before the change
    expected = np.array([wall_day(m, zone) for m in moments])
    assert np.abs(local - expected).max() * SECONDS_PER_DAY < 1e-3
    back = clock.utc(local)
    unambiguous = np.array([m.astimezone(zone).fold == 0 for m in moments]) & np.array(
        [_unrepeated(m, zone) for m in moments]
    )
    assert np.abs(back - days)[unambiguous].max(initial=0.0) * SECONDS_PER_DAY < 1e-3


def _unrepeated(moment: datetime, zone: ZoneInfo) -> bool:
    """Whether the moment's wall-clock time happens only once in `zone`."""
    wall = moment.astimezone(zone).replace(tzinfo=None)
    early, late = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    return early.utcoffset() == late.utcoffset()


def test_local_without_a_zone_and_nan_days_are_left_as_they_are() -> None:
    days = np.array([20100.25, np.nan])  # 06:00 UTC on 2025-01-12, winter in New York
    assert np.array_equal(ShopDays(None).local(days), days, equal_nan=True)
    shifted = ShopDays(NEW_YORK).local(days)
    assert np.isnan(shifted[1]) and abs(shifted[0] - (20100.25 - 5 / 24)) < 1e-9


def test_known_zone_unknown_or_missing_names_are_none() -> None:
    assert known_zone("America/New_York") == NEW_YORK
    assert known_zone("Mars/Olympus_Mons") is None
    assert known_zone("../etc/passwd") is None
    assert known_zone(None) is None
    assert known_zone("") is None


def test_local_infinite_days_stay_infinite_and_leave_the_others_shifted() -> None:
    days = np.array([20100.25, np.inf, -np.inf, np.nan])
    shifted = ShopDays(NEW_YORK).local(days)
    assert abs(shifted[0] - (20100.25 - 5 / 24)) < 1e-9
    assert shifted[1] == np.inf and shifted[2] == -np.inf and np.isnan(shifted[3])


@pytest.mark.parametrize(
    ("name", "wall", "after_gap"),
    [
        # New York skips 02:00-03:00 on 2026-03-08: 02:30 is read as 03:30 EDT (07:30 UTC)
        ("America/New_York", datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 8, 7, 30)),
        # Havana skips midnight itself: 00:00 on 2026-03-08 is read as 01:00 CDT, that date
        ("America/Havana", datetime(2026, 3, 8, 0, 0), datetime(2026, 3, 8, 5, 0)),
        # Cairo, east of UTC, skips its midnight too (2026-04-24)
        ("Africa/Cairo", datetime(2026, 4, 24, 0, 30), datetime(2026, 4, 23, 22, 30)),
    ],
)
def test_utc_reads_a_skipped_wall_time_just_after_the_gap_on_its_date(
    name: str, wall: datetime, after_gap: datetime
) -> None:
    zone = ZoneInfo(name)
    local = np.array([(wall - datetime(1970, 1, 1)).total_seconds() / SECONDS_PER_DAY])
    back = ShopDays(zone).utc(local)
    moment = EPOCH + timedelta(days=float(back[0]))
    assert abs((moment - after_gap.replace(tzinfo=UTC)).total_seconds()) < 1e-3
    assert moment.astimezone(zone).date() == wall.date()


def test_up_to_an_order_in_the_repeated_hour_is_not_after_a_later_as_of() -> None:
    # given an order at 1:50 am summer time on New York's fall-back night (05:50 UTC) and a
    # scoring run twenty minutes later, at 1:10 am winter time (06:10 UTC)
    order = datetime(2026, 11, 1, 5, 50, tzinfo=UTC)
    as_of = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    later = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    clock = ShopDays(NEW_YORK)
    days = np.array([utc_day(order), utc_day(later)])
    # when read as local days, plain, the order comes after the as-of (the clocks went back)
    assert clock.local(days)[0] > clock.local_day(as_of)
    # then up to the as-of, it is at or before it, and what came later is still later
    local, cut = clock.up_to(days, as_of)
    assert local[0] <= cut < local[1]
    assert np.floor(local[0]) == np.floor(cut)  # the same day


def test_known_zone_a_directory_of_zones_is_no_zone() -> None:
    assert known_zone("America") is None
    assert known_zone("A" * 300) is None


@pytest.mark.parametrize(
    ("name", "moment"),
    [
        # New York, an hour after the change to summer time (07:00 UTC): 03:30 EDT. Read with
        # the offset at 03:30 UTC (still winter), the way back would be an hour late
        ("America/New_York", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
        # and four hours after the change back (06:00 UTC): 05:00 EST
        ("America/New_York", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        # Berlin, half an hour before its change to summer time (01:00 UTC): 01:30 CET
        ("Europe/Berlin", datetime(2026, 3, 29, 0, 30, tzinfo=UTC)),
    ],
)
def test_utc_undoes_local_in_the_hours_next_to_a_change(name: str, moment: datetime) -> None:
    # given a moment whose wall-clock time, read as UTC, falls on the other side of the change
    clock = ShopDays(ZoneInfo(name))
    # when shifted to a local day and back, then it is the moment again
    back = clock.utc(clock.local(np.array([utc_day(moment)])))
    assert abs(float(back[0]) - utc_day(moment)) * SECONDS_PER_DAY < 1e-3
