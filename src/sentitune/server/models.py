"""Request and response bodies of the HTTP API; predictions use `sentitune.schema`."""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from sentitune.schema import Prediction
from sentitune.server.settings import ServeSettings


def _not_blank(text: str) -> str:
    if not text.strip():
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
    max_texts_per_request: int
    max_text_chars: int
    max_body_bytes: int
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
    serving: ServingInfo


def request_models(settings: ServeSettings) -> tuple[type[BaseModel], type[BaseModel]]:
    """Request bodies, built per app because their limits come from the settings."""
    Text = Annotated[
        str,
        StringConstraints(min_length=1, max_length=settings.max_text_chars),
        AfterValidator(_not_blank),
    ]

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        text: Text

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        texts: list[Text] = Field(min_length=1, max_length=settings.max_texts_per_request)

    return PredictRequest, BatchRequest
