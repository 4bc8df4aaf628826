"""The reviewer's page: a review summary a nurse reviewer reads, prints and annotates.

- :mod:`service.review.pages`: the HTML routes under ``/review`` (sign-in, search, summary, note form)
- :mod:`service.review.notes`: the notes API, ``/v1/evaluations/{evaluation_id}/notes``
- :mod:`service.review.sessions`: session cookies, CSRF tokens, the sign-in rate limit
- :mod:`service.review.store`: the tables of migration ``0002_review`` and the paged search
- :mod:`service.review.words`: how a stored result is worded for people
- ``templates/`` and ``static/review.css``: shipped in the package, nothing loaded from elsewhere
"""
