"""Real time: broadcast topics, publishing after commit, and the subscription generators."""
