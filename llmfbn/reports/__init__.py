"""One self-contained HTML report of what llmfbn wrote (``llmfbn report``)."""

from llmfbn.reports._inputs import ReportInput, find_inputs
from llmfbn.reports._report import make_report

__all__ = ["ReportInput", "find_inputs", "make_report"]
