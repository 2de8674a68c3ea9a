"""mu0sim.rollouts: closed-loop evaluation of policies across tasks and robots."""
