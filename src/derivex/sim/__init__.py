"""Order-flow generators and (later) agent-based simulation and stress scenarios."""
