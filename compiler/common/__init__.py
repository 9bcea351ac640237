"""Leaf modules shared by the stages, the runtime and the tools; none imports anything above common/."""
