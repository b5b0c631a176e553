"""Request and response bodies of the HTTP API; predictions use `sentitune.schema`."""

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from sentitune.dataset.splits import blank_characters, is_blank
from sentitune.schema import Prediction
from sentitune.server.settings import ServeSettings


def _character_class(characters: str) -> str:
    """`characters` as the body of a regex class: ranges, BMP ones \\u-escaped so every
    regex engine (schemathesis, generated clients, this server) reads them alike."""
    codes = sorted(map(ord, characters))
    spans: list[list[int]] = []
    for code in codes:
        if spans and code == spans[-1][1] + 1:
            spans[-1][1] = code
        else:
            spans.append([code, code])

    def one(code: int) -> str:
        return f"\\u{code:04x}" if code < 0x10000 else re.escape(chr(code))

    return "".join(one(a) if a == b else f"{one(a)}-{one(b)}" for a, b in spans)


# A text needs one character that is not blank: whitespace (Python's or JavaScript's) or an
# invisible format character such as a zero-width space or a soft hyphen, which cleaning
# removes, so a text of only those is as blank as an empty one (issue 26). The published
# pattern spells out that same set (`blank_characters`).
NOT_BLANK = f"[^{_character_class(blank_characters())}]"


def _not_blank(text: str) -> str:
    if is_blank(text):  # the rule itself; NOT_BLANK publishes it (tested to agree)
        raise PydanticCustomError("blank_text", "text is empty or only whitespace")
    return text


class BatchResponse(BaseModel):
    predictions: list[Prediction] = Field(description="one per input text, in input order")


class ErrorResponse(BaseModel):
    detail: Any = Field(description="what was wrong: a message, or a list of field errors")


class ServingInfo(BaseModel):
    micro_batching: bool
    max_batch_size: int
    max_wait_ms: float
    max_batch_tokens: int
    max_queue_ms: float
    max_texts_per_request: int
    max_text_chars: int
    max_body_bytes: int
    max_header_bytes: int
    keep_alive_s: float
    header_timeout_s: float
    request_timeout_s: float
    review_threshold: float = Field(description="the threshold in use (setting or run's)")
    review_truncated: bool = Field(description="truncated texts always need review")
    api_key_required: bool


class InfoResponse(BaseModel):
    # Whatever else `Classifier.info()` reports passes through unchanged.
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model: str | None
    labels: list[str]
    task: str
    method: str
    metrics: dict[str, Any] = Field(description="validation metrics of the run")
    review_threshold: float = Field(description="the run's own threshold")
    max_length: int
    backend: str
    oip_model: str = Field(description="the model's name on the Open Inference Protocol "
                                       "routes: POST /v2/models/{oip_model}/infer")
    serving: ServingInfo


class WordAttribution(BaseModel):
    word: str
    start: int = Field(description="character offset in `text`")
    end: int
    attribution: float = Field(description="share of the label's probability the word "
                                           "accounts for; positive: it supports the label")


class Explanation(BaseModel):
    text: str = Field(description="the text as the model saw it (after preprocessing)")
    label: str = Field(description="the label explained: the predicted one")
    score: float = Field(description="its probability")
    method: str
    words: list[WordAttribution]


def _text_type(settings: ServeSettings) -> Any:
    return Annotated[
        str,
        StringConstraints(min_length=1, max_length=settings.max_text_chars),
        AfterValidator(_not_blank),
        Field(json_schema_extra={"pattern": NOT_BLANK}),
    ]


def explain_request_model(settings: ServeSettings, methods: tuple[str, ...]) -> type[BaseModel]:
    """The body of POST /explain: a text and, optionally, the method."""
    Text = _text_type(settings)
    Method = Literal[methods]  # type: ignore[valid-type]

    class ExplainRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: Text
        method: Method | None = Field(default=None, description=(
            "default: integrated-gradients on a torch backend, occlusion otherwise"))

    return ExplainRequest


def request_models(settings: ServeSettings) -> tuple[type[BaseModel], type[BaseModel]]:
    """Request bodies, built per app because their limits come from the settings."""
    Text = _text_type(settings)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: Text

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Text] = Field(min_length=1, max_length=settings.max_texts_per_request)

    return PredictRequest, BatchRequest
