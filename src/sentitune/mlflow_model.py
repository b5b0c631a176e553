"""A run as an MLflow pyfunc model: `mlflow.pyfunc.load_model(uri).predict(frame)`.

The model carries a copy of the run directory (model, labels, decision, config; no
checkpoints) and scores with `sentitune.Classifier`, so it answers exactly as `predict` and
`serve` do: one row per text with the fields of `sentitune.schema` (`label` or `labels`,
`score`, `probabilities`, `needs_review`, `truncated`, and the `text`). Serve it with
`mlflow models serve -m URI --env-manager local` in an environment with sentitune.

Imported only when MLflow is used (`train --report-to mlflow`, or `log_model` directly):
the model class subclasses MLflow's, so this module needs the `mlflow` extra.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow.models
import mlflow.pyfunc
import pandas as pd

from sentitune.errors import SentituneError
from sentitune.run import Run

TEXT_COLUMN = "text"


class SentituneModel(mlflow.pyfunc.PythonModel):
    """Scores the `text` column of a DataFrame (or a list of texts) with the run's model."""

    def load_context(self, context) -> None:
        from sentitune.inference.classifier import Classifier

        self.classifier = Classifier.from_pretrained(context.artifacts["run"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            if TEXT_COLUMN not in model_input.columns:
                raise SentituneError(f"the input needs a '{TEXT_COLUMN}' column; got "
                                     f"{', '.join(map(str, model_input.columns))}")
            texts = model_input[TEXT_COLUMN]
        else:
            texts = model_input
        return pd.DataFrame(self.classifier.predict([str(text) for text in texts]))


def log_model(run: Run | str | Path, name: str = "model"):
    """Log `run` as a pyfunc model (into the active MLflow run, if there is one);
    returns MLflow's ModelInfo (`.model_uri` loads it)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from sentitune import __version__

    run = run if isinstance(run, Run) else Run.open(run)
    with tempfile.TemporaryDirectory() as scratch:
        # A clean copy named `run`: the run may still be RUN_DIR.partial, which no one loads.
        packaged = run.copy_to(Path(scratch) / "run")
        return mlflow.pyfunc.log_model(
            name=name,
            # Models from code: MLflow stores this file and runs it to load the model,
            # rather than unpickling an object.
            python_model=__file__,
            artifacts={"run": str(packaged.path)},
            signature=ModelSignature(inputs=Schema([ColSpec("string", TEXT_COLUMN)])),
            input_example=pd.DataFrame({TEXT_COLUMN: ["What a wonderful film."]}),
            # Named, not inferred: inference loads the model in a subprocess, and sentitune
            # pulls in everything else it needs.
            pip_requirements=[f"sentitune=={__version__}", f"mlflow=={mlflow.__version__}"],
        )


mlflow.models.set_model(SentituneModel())
