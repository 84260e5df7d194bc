"""A channel dependency group: what channels.py prunes together and trace.py finds."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ChannelGroup:
    """producers: [(module name, r²)], output channels c·r² ... c·r² + r² − 1 of each are channel c;
    consumers: module names whose input channels are the group's (convs, or a Linear reading them as features);
    score: the module names whose weights rank the channels (default: every producer and consumer); followers:
    modules whose input and output channels are both the group's (BatchNorm2d, depthwise convs)."""
    name: str
    size: int
    producers: list
    consumers: list
    score: list = field(default_factory=list)
    followers: list = field(default_factory=list)
