"""Acceptance: what the gate knows of each (partner, customer) pair, and how it learns it.

``cache`` is the process's own bounded cache, ``lookup`` asks the upstream's
agreements endpoint, and ``store`` puts them together (single-flight lookups,
confirmations, operators' drops, snapshots).
"""

from gate.acceptance.store import AcceptanceStore

__all__ = ["AcceptanceStore"]
