"""Every error Citewise raises belongs to a family, and each family has one HTTP status."""

from __future__ import annotations

import inspect

from api.errors import STATUS, status_of
from citewise import errors

FAMILIES = {
    errors.InvalidRequest: 400,
    errors.TooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.DocumentError: 422,
    errors.RateLimited: 429,
    errors.UpstreamFailed: 502,
    errors.Unavailable: 503,
    errors.UpstreamTimeout: 504,
    errors.ConfigurationError: 500,
}


def every_error() -> list[type[errors.CitewiseError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.CitewiseError) and cls is not errors.CitewiseError
    ]


def test_the_http_map_has_one_row_per_family_and_nothing_else() -> None:
    assert STATUS == FAMILIES


def test_every_error_answers_with_its_family_status_and_a_code_of_its_own() -> None:
    codes = set()
    for cls in every_error():
        family = next(c for c in cls.__mro__ if c in FAMILIES)
        error = cls("x", 1) if cls is errors.RateLimited else cls("x")
        assert status_of(error) == FAMILIES[family], cls
        assert cls.__doc__ and cls.__doc__.startswith("Raised when"), cls
        codes.add(cls.code)
    assert len(codes) == len(every_error())  # clients tell errors apart by code


def test_a_timeout_of_the_model_is_a_504_and_its_failure_a_502() -> None:
    assert status_of(errors.GenerationTimeout("slow")) == 504
    assert status_of(errors.GenerationFailed("down")) == 502
