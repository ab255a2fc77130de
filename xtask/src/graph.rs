//! Circles in a directed graph of named nodes: the strongly connected components that hold one,
//! each reported as a shortest circle through its smallest node, for the module and crate
//! checks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A directed graph: each node and the nodes it points to. Targets need not be keys.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// One circle of a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circle {
    /// A shortest circle through the component's smallest node, which it starts and ends
    /// with: `[a, b, a]`; a node pointing to itself is `[a, a]`.
    pub path: Vec<String>,
    /// Every node of the strongly connected component the circle lies in, sorted: breaking
    /// `path` may leave other circles among these.
    pub component: Vec<String>,
}

impl Circle {
    /// `a -> b -> a`, followed by the rest of the component when it is larger than the path.
    pub fn describe(&self) -> String {
        let path = self.path.join(" -> ");
        let others: Vec<&str> = self
            .component
            .iter()
            .filter(|node| !self.path.contains(node))
            .map(String::as_str)
            .collect();
        if others.is_empty() {
            path
        } else {
            format!("{path} (the same knot also ties in {})", others.join(", "))
        }
    }
}

/// Every circle of `graph`, one per strongly connected component that holds one, ordered by
/// the component's smallest node.
pub fn circles(graph: &Graph) -> Vec<Circle> {
    let mut found: Vec<Circle> = strongly_connected_components(graph)
        .into_iter()
        .filter_map(|component| {
            let start = component.first()?.clone();
            let is_circle = component.len() > 1 || successors(graph, &start).any(|next| *next == start);
            if !is_circle {
                return None;
            }
            let members: BTreeSet<&str> = component.iter().map(String::as_str).collect();
            let path = shortest_circle(graph, &start, &members)?;
            Some(Circle { path, component })
        })
        .collect();
    found.sort_by(|a, b| a.component.cmp(&b.component));
    found
}

fn successors<'g>(graph: &'g Graph, node: &str) -> impl Iterator<Item = &'g String> {
    graph.get(node).into_iter().flatten()
}

/// Tarjan's algorithm; each component's nodes sorted. Recursive: the graphs are a crate's
/// modules or a workspace's crates, never deep enough to matter.
fn strongly_connected_components(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        next_index: usize,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        components: Vec<Vec<String>>,
    }

    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        state.index.insert(node, state.next_index);
        state.low.insert(node, state.next_index);
        state.next_index += 1;
        state.stack.push(node);
        state.on_stack.insert(node);
        for next in successors(state.graph, node) {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let lowest = state.low[node].min(state.low[next]);
                state.low.insert(node, lowest);
            } else if state.on_stack.contains(next) {
                let lowest = state.low[node].min(state.index[next]);
                state.low.insert(node, lowest);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack.remove(member);
                component.push(member.to_owned());
                if member == node {
                    break;
                }
            }
            component.sort();
            state.components.push(component);
        }
    }

    let mut state = State {
        graph,
        next_index: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    let nodes: BTreeSet<&str> = graph
        .iter()
        .flat_map(|(node, targets)| std::iter::once(node).chain(targets))
        .map(String::as_str)
        .collect();
    for node in nodes {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.components
}

/// A shortest path from `start` back to itself through `members` only (breadth first).
fn shortest_circle(graph: &Graph, start: &str, members: &BTreeSet<&str>) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in successors(graph, node) {
            let next = next.as_str();
            if next == start {
                let mut path = vec![start.to_owned()];
                let mut at = node;
                while at != start {
                    path.push(at.to_owned());
                    at = came_from.get(at)?;
                }
                path.push(start.to_owned());
                path.reverse();
                return Some(path);
            }
            if members.contains(next) && !came_from.contains_key(next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
        }
        graph
    }

    fn paths(graph: &Graph) -> Vec<String> {
        circles(graph).iter().map(Circle::describe).collect()
    }

    #[test]
    fn a_tree_and_a_diamond_have_no_circle() {
        assert!(circles(&Graph::new()).is_empty());
        assert!(circles(&graph(&[("lib", "a"), ("lib", "b"), ("a", "c"), ("b", "c")])).is_empty());
    }

    #[test]
    fn a_two_node_circle_is_named_from_its_smallest_node() {
        assert_eq!(
            paths(&graph(&[
                ("sandbox", "labels"),
                ("labels", "sandbox"),
                ("spec", "labels")
            ])),
            ["labels -> sandbox -> labels"]
        );
    }

    #[test]
    fn a_self_loop_is_a_circle() {
        assert_eq!(paths(&graph(&[("a", "a"), ("a", "b")])), ["a -> a"]);
    }

    #[test]
    fn the_shortest_circle_is_reported_with_the_rest_of_its_knot() {
        // a -> b -> c -> d -> a, and the shortcut c -> a.
        let knot = graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a"), ("c", "a")]);
        let found = circles(&knot);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ["a", "b", "c", "a"]);
        assert_eq!(found[0].component, ["a", "b", "c", "d"]);
        assert_eq!(found[0].describe(), "a -> b -> c -> a (the same knot also ties in d)");
    }

    #[test]
    fn separate_circles_are_each_reported() {
        let two = graph(&[("x", "y"), ("y", "x"), ("y", "p"), ("p", "q"), ("q", "r"), ("r", "p")]);
        assert_eq!(paths(&two), ["p -> q -> r -> p", "x -> y -> x"]);
    }
}
