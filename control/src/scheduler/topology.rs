//! The scheduler plugins that look past one node: inter-pod affinity and anti-affinity, and pod
//! topology spread, as upstream's InterPodAffinity and PodTopologySpread decide. Both count
//! pods per topology domain (the value of a node label, `topologyKey`), so before a pod is
//! filtered against each node, [`Topology::prepare`] walks the pods of every node once.
//!
//! Required affinity wants a matching pod in the node's domain (or, for the first pod of a
//! group that matches its own term, none anywhere); required anti-affinity wants none; an
//! existing pod's required anti-affinity against the incoming pod keeps it out of that pod's
//! domain. `DoNotSchedule` spread constraints refuse a node whose domain would then hold more
//! than `maxSkew` matching pods over the least populated eligible domain. Preferred terms and
//! `ScheduleAnyway` constraints score.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PodAffinityTerm, TopologySpreadConstraint};

use super::plugins::{NodeInfo, PodInfo, Refusal, node_matches_pod};
use crate::controllers::pods::selects;

/// What inter-pod affinity needs of a pod already placed.
#[derive(Debug, Clone)]
pub struct Placed {
    pub uid: String,
    pub namespace: String,
    pub labels: Arc<BTreeMap<String, String>>,
    /// Its required anti-affinity terms, which keep matching pods out of its domain.
    pub anti: Arc<Vec<PodAffinityTerm>>,
}

/// A pod's terms about other pods.
#[derive(Debug, Clone, Default)]
pub struct PodTerms {
    pub required: Vec<PodAffinityTerm>,
    pub required_anti: Vec<PodAffinityTerm>,
    /// (weight, term); anti-affinity weights are negative.
    pub preferred: Vec<(i64, PodAffinityTerm)>,
    pub spread: Vec<TopologySpreadConstraint>,
}

impl PodTerms {
    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.spread.is_empty()
    }
}

/// Whether a term selects a pod in `namespace` with `labels`, for a term of a pod in `own`:
/// the term's namespaces, else the pod's own; an empty namespaceSelector means every one.
fn term_selects(
    term: &PodAffinityTerm,
    own: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = &term.label_selector else {
        return false;
    };
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let every = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let in_namespace = every
        || listed.iter().any(|n| n == namespace)
        || (listed.is_empty() && term.namespace_selector.is_none() && namespace == own);
    in_namespace && selects(selector, labels)
}

/// A spread constraint's counts over the eligible domains.
struct Spread {
    key: String,
    max_skew: i64,
    hard: bool,
    counts: HashMap<String, i64>,
    min: i64,
    self_match: i64,
}

/// A refusal that removing other pods could lift, as upstream's Unschedulable (not
/// UnschedulableAndUnresolvable) statuses are: anti-affinity and skew.
fn resolvable(reason: &str) -> Refusal {
    Refusal {
        reasons: vec![reason.into()],
        resolvable: true,
    }
}

/// What one pod's placement needs to know about the pods of every node.
pub struct Topology {
    /// Per required affinity term: its key, the domains with a matching pod, and whether the
    /// pod may go anywhere with the key (no pod matches yet and it matches itself).
    affinity: Vec<(String, HashSet<String>, bool)>,
    anti: Vec<(String, HashSet<String>)>,
    /// Domains (key, value) an existing pod's anti-affinity keeps this pod out of.
    excluded: Vec<(String, String)>,
    spread: Vec<Spread>,
    /// Per preferred term: its key, weight, and matching pods per domain.
    preferred: Vec<(String, i64, HashMap<String, i64>)>,
}

impl Topology {
    /// Counts what `pod` needs over `nodes`; `None` when nothing about other pods concerns it.
    pub fn prepare<'a>(
        pod: &PodInfo,
        nodes: impl Iterator<Item = &'a NodeInfo> + Clone,
    ) -> Option<Topology> {
        let existing_anti = nodes.clone().any(|n| n.anti_affinity_pods > 0);
        if pod.terms.is_empty() && !existing_anti {
            return None;
        }
        let terms = &pod.terms;
        let value = |node: &NodeInfo, key: &str| node.labels.get(key).cloned();
        let mut affinity: Vec<(String, HashSet<String>, bool)> = terms
            .required
            .iter()
            .map(|t| (t.topology_key.clone(), HashSet::new(), false))
            .collect();
        let mut any_match = vec![false; terms.required.len()];
        let mut anti: Vec<(String, HashSet<String>)> = terms
            .required_anti
            .iter()
            .map(|t| (t.topology_key.clone(), HashSet::new()))
            .collect();
        let mut excluded = Vec::new();
        let mut preferred: Vec<(String, i64, HashMap<String, i64>)> = terms
            .preferred
            .iter()
            .map(|(w, t)| (t.topology_key.clone(), *w, HashMap::new()))
            .collect();
        let mut spread: Vec<Spread> = terms
            .spread
            .iter()
            .map(|c| Spread {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                counts: HashMap::new(),
                min: 0,
                self_match: i64::from(
                    c.label_selector
                        .as_ref()
                        .is_some_and(|s| selects(s, &pod.labels)),
                ),
            })
            .collect();
        for node in nodes {
            // Spread domains are the nodes the pod could go to by its node affinity.
            let eligible = node_matches_pod(pod, node);
            for (i, c) in terms.spread.iter().enumerate() {
                if let (true, Some(v)) = (eligible, value(node, &c.topology_key)) {
                    spread[i].counts.entry(v).or_insert(0);
                }
            }
            for placed in &node.placed {
                if placed.uid == pod.uid {
                    continue;
                }
                for (i, t) in terms.required.iter().enumerate() {
                    if term_selects(t, &pod.namespace, &placed.namespace, &placed.labels) {
                        any_match[i] = true;
                        if let Some(v) = value(node, &t.topology_key) {
                            affinity[i].1.insert(v);
                        }
                    }
                }
                for (i, t) in terms.required_anti.iter().enumerate() {
                    if term_selects(t, &pod.namespace, &placed.namespace, &placed.labels)
                        && let Some(v) = value(node, &t.topology_key)
                    {
                        anti[i].1.insert(v);
                    }
                }
                for t in placed.anti.iter() {
                    if term_selects(t, &placed.namespace, &pod.namespace, &pod.labels)
                        && let Some(v) = value(node, &t.topology_key)
                    {
                        excluded.push((t.topology_key.clone(), v));
                    }
                }
                for (i, (_, t)) in terms.preferred.iter().enumerate() {
                    if term_selects(t, &pod.namespace, &placed.namespace, &placed.labels)
                        && let Some(v) = value(node, &t.topology_key)
                    {
                        *preferred[i].2.entry(v).or_insert(0) += 1;
                    }
                }
                if eligible {
                    for (i, c) in terms.spread.iter().enumerate() {
                        let matches = placed.namespace == pod.namespace
                            && c.label_selector
                                .as_ref()
                                .is_some_and(|s| selects(s, &placed.labels));
                        if let (true, Some(v)) = (matches, value(node, &c.topology_key)) {
                            *spread[i].counts.entry(v).or_insert(0) += 1;
                        }
                    }
                }
            }
        }
        for (i, t) in terms.required.iter().enumerate() {
            // The first pod of a group that matches its own term may start it anywhere.
            affinity[i].2 =
                !any_match[i] && term_selects(t, &pod.namespace, &pod.namespace, &pod.labels);
        }
        for (i, c) in terms.spread.iter().enumerate() {
            let domains = spread[i].counts.len() as i32;
            let too_few = c.min_domains.is_some_and(|m| domains < m);
            spread[i].min = if too_few {
                0
            } else {
                spread[i].counts.values().copied().min().unwrap_or(0)
            };
        }
        Some(Topology {
            affinity,
            anti,
            excluded,
            spread,
            preferred,
        })
    }

    /// The filters in upstream's order: the pod's affinity, its anti-affinity, existing pods'
    /// anti-affinity, then its hard spread constraints.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Refusal> {
        let value = |key: &str| node.labels.get(key);
        let affinity_ok = self
            .affinity
            .iter()
            .all(|(key, domains, anywhere)| match value(key) {
                None => false,
                Some(v) => *anywhere || domains.contains(v),
            });
        if !affinity_ok {
            return Err(Refusal::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        if self
            .anti
            .iter()
            .any(|(key, domains)| value(key).is_some_and(|v| domains.contains(v)))
        {
            return Err(resolvable("node(s) didn't match pod anti-affinity rules"));
        }
        if self.excluded.iter().any(|(k, v)| value(k) == Some(v)) {
            return Err(resolvable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        for s in self.spread.iter().filter(|s| s.hard) {
            let Some(v) = value(&s.key) else {
                return Err(Refusal::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let here = s.counts.get(v).copied().unwrap_or(0);
            if here + s.self_match - s.min > s.max_skew {
                return Err(resolvable(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    /// Preferred (anti-)affinity: the weighted count of matching pods in each node's domains.
    pub fn affinity_score(&self, node: &NodeInfo) -> i64 {
        self.preferred
            .iter()
            .map(|(key, weight, counts)| {
                node.labels
                    .get(key)
                    .and_then(|v| counts.get(v))
                    .map_or(0, |n| weight * n)
            })
            .sum()
    }

    /// Soft spread: the matching pods in each node's domains (fewer is better).
    pub fn spread_count(&self, node: &NodeInfo) -> i64 {
        self.spread
            .iter()
            .filter(|s| !s.hard)
            .map(|s| {
                node.labels
                    .get(&s.key)
                    .and_then(|v| s.counts.get(v))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}
        }))
        .unwrap();
        let mut info = NodeInfo::default();
        info.update(&node);
        info
    }

    fn pod(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> PodInfo {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        PodInfo::of(
            &serde_json::from_value::<Pod>(json!({
                "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
                "spec": spec
            }))
            .unwrap(),
        )
    }

    fn anti_on(key: &str) -> serde_json::Value {
        json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": key}]}}})
    }

    #[test]
    fn anti_affinity_keeps_a_pod_out_of_domains_holding_a_match_both_ways() {
        let mut a = node("a", "z1");
        let b = node("b", "z1");
        let c = node("c", "z2");
        a.add_pod(&pod("web-1", json!({"app": "web"}), json!({})));
        let incoming = pod(
            "web-2",
            json!({"app": "web"}),
            anti_on("kubernetes.io/hostname"),
        );
        let t = Topology::prepare(&incoming, [&a, &b, &c].into_iter()).unwrap();
        assert_eq!(
            t.filter(&a).unwrap_err().reasons,
            ["node(s) didn't match pod anti-affinity rules"]
        );
        assert!(t.filter(&b).is_ok() && t.filter(&c).is_ok());
        // A pod already placed with anti-affinity per zone keeps matching pods out of its zone.
        let mut a = node("a", "z1");
        a.add_pod(&pod(
            "guard",
            json!({"app": "guard"}),
            anti_on("topology.kubernetes.io/zone"),
        ));
        let plain = pod("web-3", json!({"app": "web"}), json!({}));
        let t = Topology::prepare(&plain, [&a, &b, &c].into_iter()).unwrap();
        assert_eq!(
            t.filter(&b).unwrap_err().reasons,
            ["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        assert!(t.filter(&c).is_ok());
    }

    #[test]
    fn affinity_follows_matching_pods_but_lets_the_first_of_a_group_start_anywhere() {
        let (a, b) = (node("a", "z1"), node("b", "z2"));
        let spec = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}});
        let first = pod("cache-1", json!({"app": "cache"}), spec.clone());
        let t = Topology::prepare(&first, [&a, &b].into_iter()).unwrap();
        assert!(t.filter(&a).is_ok() && t.filter(&b).is_ok());
        let mut b = b;
        b.add_pod(&first);
        let web = pod("web", json!({"app": "web"}), spec);
        let t = Topology::prepare(&web, [&a, &b].into_iter()).unwrap();
        assert_eq!(
            t.filter(&a).unwrap_err().reasons,
            ["node(s) didn't match pod affinity rules"]
        );
        assert!(t.filter(&b).is_ok());
    }

    #[test]
    fn spread_constraints_refuse_a_domain_past_max_skew() {
        let mut a = node("a", "z1");
        let b = node("b", "z2");
        let spec = json!({"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        a.add_pod(&pod("web-1", json!({"app": "web"}), spec.clone()));
        let next = pod("web-2", json!({"app": "web"}), spec);
        let t = Topology::prepare(&next, [&a, &b].into_iter()).unwrap();
        assert_eq!(
            t.filter(&a).unwrap_err().reasons,
            ["node(s) didn't match pod topology spread constraints"]
        );
        assert!(t.filter(&b).is_ok());
        let unlabelled = NodeInfo {
            name: "c".into(),
            ..NodeInfo::default()
        };
        assert_eq!(
            t.filter(&unlabelled).unwrap_err().reasons,
            ["node(s) didn't match pod topology spread constraints (missing required label)"]
        );
    }

    #[test]
    fn pods_with_no_terms_need_no_topology() {
        let a = node("a", "z1");
        assert!(Topology::prepare(&pod("p", json!({}), json!({})), [&a].into_iter()).is_none());
    }
}
