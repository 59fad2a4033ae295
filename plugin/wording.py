"""Counted nouns, for the messages of the commands and of the jobs alike."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """ "1 customer", "2 customers"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def counted_whose(count: int, noun: str) -> str:
    """ "1 customer's", "2 customers'"."""
    return f"{count} {noun}'s" if count == 1 else f"{count} {noun}s'"
