"""Pure domain code: numbers and dataclasses in, numbers and dataclasses out."""
