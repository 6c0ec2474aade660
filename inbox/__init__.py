"""The inbox domain: one function per action, the rules of SPEC.md, free of any web framework."""
