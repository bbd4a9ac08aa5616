"""The local drill lab: namespace hosts (`netns`) and, later, a whole cluster."""
