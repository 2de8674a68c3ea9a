"""mu0sim.policies: scripted experts and learned action experts."""
