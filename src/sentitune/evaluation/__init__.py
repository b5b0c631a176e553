"""Evaluation: where does the model fail?

    evaluator   `evaluate` (metrics, slices, calibration, review, errors, report) and `check`
    slices      named subsets of texts: negation, contrast, lengths, classes, your own
    behavioral  CheckList-style tests of a binary sentiment model (data in checks/)
    report      figures and the Markdown / self-contained HTML report
"""
