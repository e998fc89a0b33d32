//! What the admission tests build requests and quotas from.

use scheduler::admission::{Event, Request};
use scheduler::quota::{Amount, GroupQuota};
use uuid::Uuid;

pub(crate) const HOUR: u64 = 3_600_000;

pub(crate) fn group(name: &str, model: &str, guaranteed: u32, borrow: Amount) -> GroupQuota {
    let mut g = GroupQuota::new(name);
    g.guaranteed.insert(model.into(), guaranteed);
    g.borrow_limit.insert(model.into(), borrow);
    g
}

pub(crate) fn req(user: &str, group: &str, gpus: u32) -> Request {
    Request {
        kernel: Uuid::new_v4(),
        user: user.into(),
        group: Some(group.into()),
        gpus,
        model: Some("H100-80GB".into()),
        role_max_gpus: Amount::Unlimited,
    }
}

pub(crate) fn admitted(events: &[Event]) -> Vec<Uuid> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Admitted { kernel, .. } => Some(*kernel),
            _ => None,
        })
        .collect()
}
