"""Agents: the Agent protocol, the agent factory and the built-in numpy agents (no ray import)."""

from raymanager.agents.base import (
    BUILTIN_AGENTS,
    DEFAULT_AGENT,
    Agent,
    AgentFactory,
    Weights,
    average_weights,
    make_agent,
    resolve_agent_factory,
    round_seeds,
    validate_agent_config,
)
from raymanager.agents.es import EvolutionStrategies

__all__ = [
    "BUILTIN_AGENTS",
    "DEFAULT_AGENT",
    "Agent",
    "AgentFactory",
    "EvolutionStrategies",
    "Weights",
    "average_weights",
    "make_agent",
    "resolve_agent_factory",
    "round_seeds",
    "validate_agent_config",
]
