"""Agents: the Agent protocol, the agent factory and the built-in numpy agents (no ray import)."""

from raymanager.agents.ars import ARS
from raymanager.agents.base import (
    BUILTIN_AGENTS,
    DEFAULT_AGENT,
    Agent,
    AgentFactory,
    RolloutAgent,
    RoundUpdate,
    Weights,
    average_weights,
    combine_round,
    make_agent,
    resolve_agent_factory,
    round_seeds,
    validate_agent_config,
)
from raymanager.agents.es import EvolutionStrategies

__all__ = [
    "ARS",
    "BUILTIN_AGENTS",
    "DEFAULT_AGENT",
    "Agent",
    "AgentFactory",
    "EvolutionStrategies",
    "RolloutAgent",
    "RoundUpdate",
    "Weights",
    "average_weights",
    "combine_round",
    "make_agent",
    "resolve_agent_factory",
    "round_seeds",
    "validate_agent_config",
]
