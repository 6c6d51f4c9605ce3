"""Episodes and dedup compare two events with each other: their default thresholds keep apart different
people as alike as the clip's hardest pair (BENCHMARKS.md, event against event), and a settings rule keeps
them at or above the match threshold."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from agents.dedup import Deduplicator, DedupRules
from agents.episode_rules import EpisodeBuilder, EpisodeRules
from models.faces import confidence, confidences
from pipeline.settings import Settings, load_settings
from tests.unit.notify_helpers import event, near, person
from tests.unit.test_cli_errors import facestream

HARDEST_OTHER = 0.87  # Alex Lacamoire's profile track against Obama's (calibration, every frame of the clip)
SAME = 0.997  # Lin-Manuel Miranda's track in the first shot against his track in the third


def cosine_for(conf: float) -> float:
    """The cosine of two unit descriptors at which ``confidence`` gives ``conf``."""
    distance = 0.425 + 0.03 * float(np.log(1 / conf - 1))
    return 1 - distance**2 / 2


def test_cosine_for_inverts_the_calibration() -> None:
    assert confidence(cosine_for(HARDEST_OTHER)) == pytest.approx(HARDEST_OTHER)


def test_two_unknown_people_as_alike_as_the_clips_hardest_pair_stay_apart() -> None:
    settings = Settings()
    a = person(1)
    b, again = near(a, cosine_for(HARDEST_OTHER), 2), near(a, cosine_for(SAME), 3)
    dedup = Deduplicator(confidences, DedupRules.from_settings(settings.dedup))
    kept = [dedup.offer(event(i, t, d, video_id="v", quality=q)).keep
            for i, t, d, q in (("a", 0, a, 0.9), ("b", 1, b, 0.5), ("a-again", 2, again, 0.5))]
    assert kept == [True, True, False]  # the other person reaches the sinks; the same one folds
    episodes = EpisodeBuilder(confidences, EpisodeRules.from_settings(settings.episodes))
    opened = [c.episode.episode_id for e in (event("a", 0, a), event("b", 1, b), event("a-again", 2, again))
              for c in episodes.add(e, now=0)]
    assert opened == ["ep:a", "ep:b", "ep:a"]


@pytest.mark.parametrize("overrides", [
    {"episodes": {"threshold": 0.3}},
    {"dedup": {"threshold": 0.39}},
    {"matcher": {"threshold": 0.95}},  # a stricter match threshold needs stricter event thresholds too
])
def test_event_thresholds_below_the_match_threshold_are_refused(overrides: dict[str, dict[str, float]]) -> None:
    with pytest.raises(ValidationError, match=r"must be at least matcher\.threshold"):
        Settings(**overrides)


def test_event_thresholds_at_or_above_the_match_threshold_are_taken() -> None:
    s = Settings(matcher={"threshold": 0.95}, episodes={"threshold": 0.95}, dedup={"threshold": 0.97})
    assert (s.matcher.threshold, s.episodes.threshold, s.dedup.threshold) == (0.95, 0.95, 0.97)


def test_a_flag_can_repair_what_the_environment_alone_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESTREAM_MATCHER_THRESHOLD", "0.95")
    monkeypatch.setenv("FACESTREAM_EPISODES_SEARCH_INTERVAL_S", "7")
    s = load_settings({"episodes": {"threshold": 0.96}, "dedup": {"threshold": 0.96}})
    assert (s.matcher.threshold, s.episodes.threshold, s.episodes.search_interval_s) == (0.95, 0.96, 7.0)


def test_the_rule_is_one_line_naming_flags_and_variables() -> None:
    done = facestream("run", "detector", env={"FACESTREAM_MATCHER_THRESHOLD": "0.95"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "episodes.threshold (0.9, --episodes-threshold / FACESTREAM_EPISODES_THRESHOLD)" in lines[0]
    assert "dedup.threshold (0.9" in lines[0] and "matcher.threshold (0.95)" in lines[0]
