"""The parameters of each built-in task type on the wire: one schema per ``type``, so the
OpenAPI document says what ``POST /v1/tasks`` accepts. What a schema cannot say is checked
at submit (skills exist, items fit the first skill's input schema, the sweep's metric is one
of its skill's figures, the model is one the caller may use)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from prsm.domain.task_types import MAX_ITEMS, MAX_STAGES, MAX_TOKENS

SkillName = Annotated[str, Field(min_length=1, max_length=200, examples=["math.square"],
                                 description="A skill: its name, or module:function")]  # fmt: skip
Items = Annotated[list[Any], Field(min_length=1, max_length=MAX_ITEMS,
                                   description="The first skill's inputs")]  # fmt: skip
ModelName = Annotated[str, Field(min_length=1, max_length=64, examples=["prsm-tiny"],
                                 description="A model the caller may use")]  # fmt: skip
MaxTokens = Annotated[int, Field(ge=1, le=MAX_TOKENS, description="Tokens per answer")]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requires: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32,
        description="Capabilities an agent must have besides the skills'",
    )  # fmt: skip


class MapParams(_Params):
    """``skill`` applied to every item (a map or an llm skill)."""

    skill: SkillName
    items: Items


class MapReduceParams(MapParams):
    """``skill`` over the items, then a ``reduce`` skill over all the outputs."""

    reduce: SkillName


class PipelineParams(_Params):
    """Every item through the ``stages`` in order, each item streaming on as it is done."""

    stages: list[SkillName] = Field(min_length=1, max_length=MAX_STAGES)
    items: Items


class SweepParams(_Params):
    """A simulation skill over parameter sets (listed, or the product of a ``grid``; give
    one of the two), with the statistics of one figure of its output and the outliers."""

    skill: SkillName
    parameter_sets: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_ITEMS, description="The sets, one per run"
    )
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="Parameter name → values (their product)"
    )
    metric: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="The figure of the output compared (default: the skill's own)",
    )  # fmt: skip
    z: float = Field(default=2.0, gt=0, le=10, description="Outlier threshold (std devs)")
    summarise_with: ModelName | None = Field(
        default=None, description="A model that summarises the outliers"
    )
    max_tokens: MaxTokens = 256


class PromptParams(_Params):
    """Each prompt answered by ``model`` (an ``llm.complete`` subtask each)."""

    model: ModelName
    prompts: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=MAX_ITEMS)
    max_tokens: MaxTokens = 128


def sent(params: BaseModel) -> dict[str, Any]:
    """The parameters as the user gave them (a null is as if left out): the task type fills
    in its defaults (one source for each)."""
    given = params.model_dump(mode="json", exclude_unset=True)
    return {name: value for name, value in given.items() if value is not None}
