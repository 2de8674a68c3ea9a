"""mu0sim: train and evaluate trace-conditioned robot policies (μ0 + action experts) in robosuite simulation.

Data flows one way: ``mu0sim.envs`` -> datasets -> TraceExtract -> μ0 -> action experts (``mu0sim.policies``)
-> closed-loop evaluation (``mu0sim.rollouts``).
"""

__version__ = "0.1.0"
