"""Which configured route a request is, and the ids its path holds."""

from __future__ import annotations

from dataclasses import dataclass

from memshift.config.settings import RouteSpec


@dataclass(slots=True)
class RouteMatch:
    """A request matched to its route; ``params`` are the path's id segments, in order."""

    spec: RouteSpec
    params: tuple[str, ...]

    def path_with(self, params: tuple[str, ...]) -> str:
        """Return the route's path with ``params`` in its id segments."""
        if not params:  # a path without id segments (a collection's: every create)
            return self.spec.path
        parts = self.spec.path.split("{")
        out = [parts[0]]
        for value, rest in zip(params, parts[1:], strict=True):
            out.append(value + rest.split("}", 1)[1])
        return "".join(out)


def match_route(routes: tuple[RouteSpec, ...], method: str, path: str) -> RouteMatch | None:
    """Return the first route whose method and path template fit, or None."""
    for spec in routes:
        if method in spec.methods:
            found = spec.pattern.match(path)
            if found:
                return RouteMatch(spec, found.groups())
    return None
