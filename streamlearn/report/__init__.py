"""The run report: one self-contained HTML page of how a recorded run went.

:func:`render_report` turns a run record (``streamlearn run --record``) into the page.
"""

from streamlearn.report.page import render_report

__all__ = ["render_report"]
