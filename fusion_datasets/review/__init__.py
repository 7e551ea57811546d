"""Listening to a run's captions and judging them: a local review page whose judgements calibrate the filter.

:func:`open_review` samples an output's captions (stratified over CLAP scores), :func:`start_server` serves
the page on 127.0.0.1 and saves each judgement as it is made, :func:`export_review` writes a read-only copy.
"""

from fusion_datasets.review.page import export_review, render_page
from fusion_datasets.review.server import ReviewServer, start_server
from fusion_datasets.review.session import ReviewSession, open_review

__all__ = ["ReviewServer", "ReviewSession", "export_review", "open_review", "render_page", "start_server"]
