"""``gate audit``: which customers of a partner the gate would block, and why.

``customers`` walks Partner Center's paged customers list, ``run`` decides
each customer with the gate's own lookup (``gate.acceptance.lookup``),
``report`` writes the rows (CSV or JSON) and the summary, ``progress`` draws
the bar on a terminal, and ``command`` is the CLI around them.
"""

__all__: list[str] = []
