"""The one exception a rule definition can raise."""

from __future__ import annotations


class RuleSyntaxError(ValueError):
    """A rule that cannot be compiled: bad text, an unknown name, or an unusable configuration.

    `position` is the character offset of the problem in the text the caller passed (the whole
    string when metrics came as one `;`-separated string, else the list element
    `metric_index`). Both are None for configuration problems (windowSize, step, precision).
    """

    def __init__(self, message: str, position: int | None = None, metric_index: int | None = None):
        self.message = message
        self.position = position
        self.metric_index = metric_index
        where = []
        if metric_index is not None:
            where.append(f"metric {metric_index}")
        if position is not None:
            where.append(f"position {position}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
