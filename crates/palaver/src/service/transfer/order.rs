//! The shape of an imported tree: its links checked (unique ids, parents that exist, no
//! cycle) and the order it is stored in, each message after its parent.

use std::collections::HashMap;

use uuid::Uuid;

use crate::service::ServiceError;

/// A document's messages as a tree, by their index in the document.
#[derive(Debug)]
pub(super) struct Tree {
    /// Every index, each after its parent: the document's order where it already is so
    /// (a message that comes before its parent follows the parent instead).
    pub order: Vec<usize>,
    parents: Vec<Option<usize>>,
    index: HashMap<Uuid, usize>,
}

impl Tree {
    /// The tree of `links` (each message's id and parent id, in document order).
    pub fn of(links: &[(Uuid, Option<Uuid>)]) -> Result<Tree, ServiceError> {
        let mut index = HashMap::with_capacity(links.len());
        for (i, (id, _)) in links.iter().enumerate() {
            if let Some(first) = index.insert(*id, i) {
                return Err(invalid(i, "id", format!("duplicates messages[{first}].id")));
            }
        }
        let parents = links
            .iter()
            .enumerate()
            .map(|(i, (id, parent))| match parent {
                None => Ok(None),
                Some(parent) if parent == id => Err(cycle(i)),
                Some(parent) => index.get(parent).copied().map(Some).ok_or_else(|| {
                    invalid(i, "parentId", "names no message of the document".into())
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let order = parents_first(&parents)?;
        Ok(Tree {
            order,
            parents,
            index,
        })
    }

    /// The active leaf: the newest message under `requested` (it included, newest in the
    /// stored order), by default the last message stored; `None` for an empty tree.
    pub fn leaf(&self, requested: Option<Uuid>) -> Result<Option<usize>, ServiceError> {
        let Some(requested) = requested else {
            return Ok(self.order.last().copied());
        };
        let start = *self
            .index
            .get(&requested)
            .ok_or_else(|| ServiceError::Invalid {
                field: "activeLeafId".into(),
                message: "names no message of the document".to_owned(),
            })?;
        let mut under = vec![false; self.parents.len()];
        under[start] = true;
        let mut newest = start;
        for &i in &self.order {
            if self.parents[i].is_some_and(|p| under[p]) {
                under[i] = true;
                newest = i;
            }
        }
        Ok(Some(newest))
    }
}

/// Every index after its parent, in document order where it can be; an error naming a
/// message of a cycle when some can never be placed.
fn parents_first(parents: &[Option<usize>]) -> Result<Vec<usize>, ServiceError> {
    let mut placed = vec![false; parents.len()];
    let mut order = Vec::with_capacity(parents.len());
    // Messages met before their parent, by parent: placed right after it.
    let mut waiting: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, parent) in parents.iter().enumerate() {
        match parent {
            Some(p) if !placed[*p] => {
                waiting.entry(*p).or_default().push(i);
                continue;
            }
            _ => {}
        }
        let mut stack = vec![i];
        while let Some(next) = stack.pop() {
            placed[next] = true;
            order.push(next);
            if let Some(children) = waiting.remove(&next) {
                stack.extend(children.into_iter().rev());
            }
        }
    }
    match placed.iter().position(|p| !p) {
        None => Ok(order),
        Some(stuck) => Err(cycle(in_cycle(parents, stuck))),
    }
}

/// A message of the cycle above `start` (which may itself hang under that cycle).
fn in_cycle(parents: &[Option<usize>], start: usize) -> usize {
    let mut seen = vec![false; parents.len()];
    let mut at = start;
    while !seen[at] {
        seen[at] = true;
        match parents[at] {
            Some(p) => at = p,
            None => return start,
        }
    }
    at
}

fn invalid(i: usize, field: &str, message: String) -> ServiceError {
    ServiceError::Invalid {
        field: format!("messages[{i}].{field}").into(),
        message,
    }
}

fn cycle(i: usize) -> ServiceError {
    invalid(
        i,
        "parentId",
        "makes a cycle: the message would be its own ancestor".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    fn field(err: ServiceError) -> String {
        match err {
            ServiceError::Invalid { field, .. } => field.into_owned(),
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn keeps_an_ordered_document_as_it_is() {
        let id = ids(4);
        let links = [
            (id[0], None),
            (id[1], Some(id[0])),
            (id[2], Some(id[0])),
            (id[3], Some(id[1])),
        ];
        let tree = Tree::of(&links).unwrap();
        assert_eq!(tree.order, [0, 1, 2, 3]);
        assert_eq!(tree.leaf(None).unwrap(), Some(3));
        assert_eq!(tree.leaf(Some(id[2])).unwrap(), Some(2));
        assert_eq!(tree.leaf(Some(id[0])).unwrap(), Some(3));
    }

    #[test]
    fn puts_children_after_their_parents() {
        let id = ids(4);
        let links = [
            (id[3], Some(id[1])),
            (id[1], Some(id[0])),
            (id[2], Some(id[0])),
            (id[0], None),
        ];
        let tree = Tree::of(&links).unwrap();
        let position = |i: usize| tree.order.iter().position(|&o| o == i).unwrap();
        for (child, parent) in [(0, 1), (1, 3), (2, 3)] {
            assert!(position(parent) < position(child), "{:?}", tree.order);
        }
        assert_eq!(tree.order.len(), 4);
    }

    #[test]
    fn refuses_bad_links_naming_the_message() {
        let id = ids(3);
        let duplicate = Tree::of(&[(id[0], None), (id[1], None), (id[0], None)]);
        assert_eq!(field(duplicate.unwrap_err()), "messages[2].id");
        let dangling = Tree::of(&[(id[0], None), (id[1], Some(id[2]))]);
        assert_eq!(field(dangling.unwrap_err()), "messages[1].parentId");
        let own = Tree::of(&[(id[0], Some(id[0]))]);
        assert_eq!(field(own.unwrap_err()), "messages[0].parentId");
        // 0 hangs under the cycle 1 <-> 2: the error names a message of the cycle.
        let cycle = Tree::of(&[
            (id[0], Some(id[1])),
            (id[1], Some(id[2])),
            (id[2], Some(id[1])),
        ]);
        let named = field(cycle.unwrap_err());
        assert!(
            ["messages[1].parentId", "messages[2].parentId"].contains(&named.as_str()),
            "{named}"
        );
    }

    #[test]
    fn an_unknown_active_leaf_is_refused() {
        let id = ids(2);
        let tree = Tree::of(&[(id[0], None)]).unwrap();
        assert_eq!(field(tree.leaf(Some(id[1])).unwrap_err()), "activeLeafId");
        assert_eq!(Tree::of(&[]).unwrap().leaf(None).unwrap(), None);
    }
}
