"""Rules stage: firewall requirements as versioned data (profiles, service tags, M365 endpoints)."""

from meshpcap.rules.load import (
    cloud_scripting_rule,
    default_profile,
    list_profiles,
    load_profile,
    load_rules_file,
    merge_profiles,
    profile_names,
    profiles_dir,
    webslate_rules,
)
from meshpcap.rules.m365 import EndpointSet, load_m365_endpoints, load_m365_profile, profile_from_m365
from meshpcap.rules.match import DomainMatcher, PrefixIndex, parse_domain_pattern
from meshpcap.rules.model import ExpectedGroup, PortSet, Profile, Rule
from meshpcap.rules.servicetags import ServiceTags, cache_dir, cached_service_tags, load_service_tags

__all__ = [
    "DomainMatcher", "EndpointSet", "ExpectedGroup", "PortSet", "PrefixIndex", "Profile", "Rule", "ServiceTags",
    "cache_dir", "cached_service_tags", "cloud_scripting_rule", "default_profile",
    "list_profiles", "load_m365_endpoints", "load_m365_profile", "load_profile", "load_rules_file",
    "load_service_tags", "merge_profiles", "parse_domain_pattern", "profile_from_m365", "profile_names",
    "profiles_dir", "webslate_rules",
]
