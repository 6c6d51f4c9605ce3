"""The face attributes as flat fields (gender, age, mask, emotion, liveness), read from the per-model
distributions that travel in messages (``schemas.messages.Attributes``).

The distributions stay in ``attributes`` (every label's probability); these fields are what events, episodes,
search results and ``/v1/detect`` show next to them, what the SQL store indexes and what event filters and
notification rules compare against. A field is null when its model did not run on the face.

- ``gender``: ``"male"`` / ``"female"``, the more likely of ``attributes["gender"]``; ``gender_score`` its probability.
- ``age``: years, ``attributes["age"]["years"]`` (face-api's regression, about +-8 years on portraits).
- ``mask``: true when ``attributes["mask"]["mask"]`` exceeds ``["no_mask"]``; ``mask_score`` = the mask probability.
- ``emotion``: the most likely label of ``attributes["emotion"]``.
- ``liveness``: live probability (``attributes["liveness"]["live"]``), only where per-event liveness is on.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Attributes = dict[str, dict[str, float]]
Gender = Literal["male", "female"]
Emotion = Literal["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # fer's labels


class AttributeFields(BaseModel):
    """The flat fields shown next to ``attributes`` (events, episodes, search results, ``/v1/detect``)."""

    gender: Gender | None = Field(None, description="male or female (null: not classified).")
    age: float | None = Field(None, description="Estimated age in years.")
    mask: bool | None = Field(None, description="Wears a face mask.")
    emotion: str | None = Field(None, description="Most likely emotion.")
    liveness: float | None = Field(None, description="Live probability, 0-1 (only with per-event liveness).")


class AttributeSummary(AttributeFields):
    """The flat attribute fields of one face plus the scores behind them (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gender_score: float | None = Field(None, description="Probability of that gender, 0.5-1.")
    mask_score: float | None = Field(None, description="Probability of a mask, 0-1.")

    def fields(self) -> dict[str, Any]:
        """The ``AttributeFields`` values, as keyword arguments of a body that has them."""
        return self.model_dump(include=set(AttributeFields.model_fields))


def summarise(attributes: Attributes) -> AttributeSummary:
    """The flat fields of a face's attribute distributions (missing models give nulls)."""
    values: dict[str, object] = {}
    gender = attributes.get("gender")
    if gender and {"male", "female"} <= set(gender):
        male = gender["male"] >= gender["female"]
        values["gender"] = "male" if male else "female"
        values["gender_score"] = float(gender["male"] if male else gender["female"])
    age = attributes.get("age")
    if age and "years" in age:
        values["age"] = round(float(age["years"]), 1)
    mask = attributes.get("mask")
    if mask and "mask" in mask:
        values["mask"] = bool(mask["mask"] > mask.get("no_mask", 1.0 - mask["mask"]))
        values["mask_score"] = float(mask["mask"])
    emotion = attributes.get("emotion")
    if emotion:
        values["emotion"] = max(emotion, key=emotion.__getitem__)
    live = attributes.get("liveness")
    if live and "live" in live:
        values["liveness"] = float(live["live"])
    return AttributeSummary.model_validate(values)


class AttributeFilters(BaseModel):
    """Attribute conditions shared by event and episode listings and notification rules (all optional; a face
    whose attribute is unknown never passes a condition on it). Episodes are judged by their best event."""

    gender: Gender | None = Field(None, description="Only faces classified as this gender.")
    age_min: float | None = Field(None, ge=0, le=150, description="Only faces estimated at least this old (years).")
    age_max: float | None = Field(None, ge=0, le=150, description="Only faces estimated at most this old (years).")
    mask: bool | None = Field(None, description="true: only faces with a mask; false: only faces without one.")
    emotion: Emotion | None = Field(None, description="Only faces whose most likely emotion is this.")

    def attribute_conditions_set(self) -> bool:
        """Whether any attribute condition is set."""
        return any(v is not None for v in (self.gender, self.age_min, self.age_max, self.mask, self.emotion))

    def admits(self, face: AttributeFields | None) -> bool:
        """Whether a face with these attribute fields passes (``None``: nothing known, passes only when no
        condition is set)."""
        if not self.attribute_conditions_set():
            return True
        if face is None:
            return False
        if self.gender is not None and face.gender != self.gender:
            return False
        if self.mask is not None and face.mask is not self.mask:
            return False
        if self.emotion is not None and face.emotion != self.emotion:
            return False
        if self.age_min is not None and (face.age is None or face.age < self.age_min):
            return False
        return not (self.age_max is not None and (face.age is None or face.age > self.age_max))
