//! The start order of a stack: a topological order of `depends_on`, declaration order among
//! services that are ready together, with cycles and unknown services refused by name.

use crate::ComposeError;

/// `services` are `(name, dependencies)` in declaration order; returns their indices in a
/// start order where every service comes after everything it depends on.
pub(crate) fn start_order(services: &[(&str, Vec<&str>)]) -> Result<Vec<usize>, ComposeError> {
    let index_of = |name: &str| services.iter().position(|(candidate, _)| *candidate == name);
    let mut dependencies: Vec<Vec<usize>> = Vec::with_capacity(services.len());
    for (service, needs) in services {
        let mut resolved = Vec::with_capacity(needs.len());
        for dependency in needs {
            let index = index_of(dependency).ok_or_else(|| ComposeError::UnknownDependency {
                service: (*service).to_string(),
                dependency: (*dependency).to_string(),
            })?;
            resolved.push(index);
        }
        dependencies.push(resolved);
    }

    let mut started = vec![false; services.len()];
    let mut order = Vec::with_capacity(services.len());
    while order.len() < services.len() {
        // The earliest declared service whose dependencies have all started.
        let ready = (0..services.len()).find(|&i| !started[i] && dependencies[i].iter().all(|&d| started[d]));
        match ready {
            Some(index) => {
                started[index] = true;
                order.push(index);
            }
            None => return Err(cycle_error(services, &dependencies, &started)),
        }
    }
    Ok(order)
}

/// Names one cycle among the services that could not start: follow unstarted dependencies
/// from any of them until a service repeats.
fn cycle_error(services: &[(&str, Vec<&str>)], dependencies: &[Vec<usize>], started: &[bool]) -> ComposeError {
    let mut path: Vec<usize> = Vec::new();
    let mut current = started.iter().position(|s| !s).unwrap_or_default();
    loop {
        if let Some(first) = path.iter().position(|&seen| seen == current) {
            let mut cycle: Vec<String> = path[first..].iter().map(|&i| services[i].0.to_string()).collect();
            cycle.push(services[current].0.to_string());
            return ComposeError::DependencyCycle { cycle };
        }
        path.push(current);
        // Every unstarted service waits on at least one unstarted service, else it would be ready.
        match dependencies[current].iter().copied().find(|&d| !started[d]) {
            Some(next) => current = next,
            None => {
                let cycle = path.iter().map(|&i| services[i].0.to_string()).collect();
                return ComposeError::DependencyCycle { cycle };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_start_first_and_ties_keep_declaration_order() {
        let services = vec![
            ("web", vec!["api"]),
            ("api", vec!["db", "cache"]),
            ("db", vec![]),
            ("cache", vec![]),
        ];
        let order: Vec<&str> = start_order(&services)
            .unwrap()
            .into_iter()
            .map(|i| services[i].0)
            .collect();
        assert_eq!(order, ["db", "cache", "api", "web"]);
    }

    #[test]
    fn a_cycle_is_named() {
        let services = vec![
            ("a", vec![]),
            ("b", vec!["c"]),
            ("c", vec!["d"]),
            ("d", vec!["b"]),
            ("e", vec!["b"]),
        ];
        let error = start_order(&services).unwrap_err();
        assert_eq!(
            error,
            ComposeError::DependencyCycle {
                cycle: vec!["b".into(), "c".into(), "d".into(), "b".into()]
            }
        );
        assert_eq!(
            error.to_string(),
            "services depend on each other in a cycle: b → c → d → b; break the cycle in `depends_on`"
        );
    }

    #[test]
    fn a_service_depending_on_itself_is_a_cycle() {
        let services = vec![("a", vec!["a"])];
        assert_eq!(
            start_order(&services).unwrap_err(),
            ComposeError::DependencyCycle {
                cycle: vec!["a".into(), "a".into()]
            }
        );
    }

    #[test]
    fn an_unknown_dependency_names_both_services() {
        let services = vec![("web", vec!["db"])];
        assert_eq!(
            start_order(&services).unwrap_err(),
            ComposeError::UnknownDependency {
                service: "web".into(),
                dependency: "db".into()
            }
        );
    }
}
