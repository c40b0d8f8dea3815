//! The object the crash was working on: of the addresses the crashing
//! thread's crash-site frames held (see [`crate::stacks::crash_site`]), the
//! first whose header says freed, else the live argument of the innermost
//! one, checked as every owned item is (`HeaderCheck::dead`).

use super::items::{DeadHeader, HeaderCheck};
use super::read_context::ReadContext;
use super::referrers::{Shapes, owned_targets};
use super::{Finding, FindingKind, Referrer, ReferrerKind};
use crate::diagnostic::Severity;
use crate::process::Process;
use crate::stacks::crash_site::{Candidate, SiteRole, hands_out_blocks};

/// What was found wrong with the crash-site object, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SiteState {
    /// Its header says freed.
    Dead(DeadHeader),
    /// A live container holding a word that is not an object pointer.
    NotAPointerItem(u64),
    /// A live container holding an object whose header says freed.
    FreedItem(u64, DeadHeader),
    /// Nothing.
    Alive,
}

/// What a candidate's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    Dead(DeadHeader),
    Alive,
}

/// Whether a dead header that no longer has a type as `ob_type` says the
/// argument `candidate` was an object whose block was freed (and maybe
/// reused): its block is free, or it holds no type where the type was, or
/// the call through its type's slot went astray. A refcount of 0 alone on
/// other memory is no evidence (any argument register may have been
/// overwritten with some buffer since).
fn reused(candidate: &Candidate, dead: DeadHeader) -> bool {
    matches!(dead, DeadHeader::NotAType(_) | DeadHeader::FreeBlock(_))
        || candidate.role == SiteRole::SlotCall
}

/// What `candidate` points at, when it is or was an object: readable, on
/// no module's image (static objects are not freed), and with a type
/// object as `ob_type`. A dead header whose `ob_type` is no type (its
/// block reused for other data) is taken only from an argument of a
/// function that works on objects, with evidence of the reuse
/// ([`reused`]): the block was handed over as one, even if what it holds
/// now is not.
fn state(
    process: &Process,
    heap: &ReadContext,
    headers: &mut HeaderCheck,
    candidate: &Candidate,
) -> Option<HeaderState> {
    let address = candidate.address;
    if address < 4096
        || !address.is_multiple_of(8)
        || process.modules().by_address(address).is_some()
        || on_a_thread_stack(process, address)
    {
        return None;
    }
    heap.object_header(address)?;
    let was_object = headers.was_object(heap, address);
    match headers.dead(heap, address) {
        Some(dead) if was_object || candidate.is_argument() && reused(candidate, dead) => {
            Some(HeaderState::Dead(dead))
        }
        None if was_object => Some(HeaderState::Alive),
        _ => None,
    }
}

/// The crash-site finding, when a candidate is or was an object: an error
/// when its header says freed (but a dealloc's own object at refcount 0
/// that nothing still holds, which is how a dealloc runs), a note with
/// what was recovered otherwise.
pub(crate) fn examine(
    process: &Process,
    heap: &ReadContext,
    candidates: &[Candidate],
    findings: &[Finding],
) -> Option<Finding> {
    let mut headers = HeaderCheck::new();
    let mut live = None;
    // Arguments first, innermost frame first: the object a function was
    // given; then whatever else its registers held.
    let (arguments, others): (Vec<&Candidate>, Vec<&Candidate>) =
        candidates.iter().partition(|c| c.is_argument());
    for candidate in arguments.into_iter().chain(others) {
        match state(process, heap, &mut headers, candidate) {
            Some(HeaderState::Dead(DeadHeader::FreeBlock(_)))
                if hands_out_blocks(&candidate.function) => {}
            Some(HeaderState::Dead(dead)) => {
                return Some(finding(heap, candidate, SiteState::Dead(dead), findings));
            }
            Some(HeaderState::Alive) if candidate.is_argument() => {
                if let Some(item) = bad_item(heap, &mut headers, candidate.address) {
                    return Some(finding(heap, candidate, item, findings));
                }
                live.get_or_insert(candidate);
            }
            _ => {}
        }
    }
    live.map(|c| finding(heap, c, SiteState::Alive, findings))
}

/// Items of a live container checked, at most: the crash site's container
/// is read whole only up to this.
const MAX_ITEMS_CHECKED: usize = 100_000;

/// The first item of the tuple, list or dict at `container` that cannot
/// be an object a live container owns: not a pointer (a freed container's
/// item array reused for other data), or an object whose header says freed.
fn bad_item(heap: &ReadContext, headers: &mut HeaderCheck, container: u64) -> Option<SiteState> {
    let ty = heap.objects.type_of(container).ok()?;
    let shape = Shapes::default().shape(heap, ty);
    let (mut not_a_pointer, mut freed) = (None, None);
    let mut seen = 0;
    owned_targets(heap, container, shape, &mut |item| {
        seen += 1;
        if not_a_pointer.is_some() || seen > MAX_ITEMS_CHECKED {
            return;
        }
        if item < 4096 || !item.is_multiple_of(8) {
            not_a_pointer = Some(SiteState::NotAPointerItem(item));
        } else if freed.is_none()
            && let Some(dead) = headers.dead(heap, item)
            && headers.was_object(heap, item)
        {
            freed = Some(SiteState::FreedItem(item, dead));
        }
    });
    // A word that is no pointer says the container itself was freed and
    // written over: it is the victim, whatever its items look like.
    not_a_pointer.or(freed)
}

fn finding(
    heap: &ReadContext,
    site: &Candidate,
    state: SiteState,
    findings: &[Finding],
) -> Finding {
    let address = site.address;
    let type_name = match state {
        SiteState::Dead(why) => name_of(heap, address, why),
        _ => heap
            .objects
            .type_name(address)
            .unwrap_or_else(|_| "object".into()),
    };
    // The owners the reference counter found, from the object's other findings.
    let owners_of = |target: u64| {
        findings
            .iter()
            .filter(|f| f.address == target && f.kind != FindingKind::CrashSiteObject)
            .map(|f| &f.referrers)
            .find(|r| !r.is_empty())
            .cloned()
            .unwrap_or_default()
    };
    let referrers = match state {
        SiteState::FreedItem(item, _) => {
            let mut owners = owners_of(item);
            if !owners.iter().any(|r| r.container == Some(address)) {
                owners.insert(
                    0,
                    Referrer {
                        at: address,
                        kind: ReferrerKind::Object,
                        container: Some(address),
                        description: format!("{type_name} {address:#x}"),
                    },
                );
            }
            owners
        }
        _ => owners_of(address),
    };
    let held = referrers
        .iter()
        .any(|r| matches!(r.kind, ReferrerKind::Object | ReferrerKind::Frame));
    let site_text = format!(
        "the crashing thread died in {} (native frame {}) working on {type_name} {address:#x}, \
         recovered from {}",
        site.function, site.frame, site.recovered
    );
    let refcount = heap.refcount(address).map(|(rc, _)| rc);
    // A freed item is the victim; the container the site worked on holds it.
    let (subject, subject_type) = match state {
        SiteState::FreedItem(item, why) => (item, name_of(heap, item, why)),
        _ => (address, type_name.clone()),
    };
    let (severity, message) = match state {
        // A dealloc runs on an object whose refcount just reached 0: only
        // an owner still holding it makes that a use after free.
        SiteState::Dead(DeadHeader::Refcount(0)) if site.role == SiteRole::Dealloc && !held => (
            Severity::Note,
            format!("{site_text}; its refcount is 0, as for any object being freed"),
        ),
        SiteState::Dead(why) => {
            let still = if held {
                ": freed while still referenced"
            } else {
                ": it was freed before"
            };
            (
                Severity::Error,
                format!("{site_text}, but {}{still}", why.describe()),
            )
        }
        SiteState::NotAPointerItem(item) => (
            Severity::Error,
            format!(
                "{site_text}, which holds {item:#x} as an item, not an object pointer: \
                 its memory was freed and written over while still in use"
            ),
        ),
        SiteState::FreedItem(item, why) => (
            Severity::Error,
            format!(
                "{site_text}, which holds {subject_type} {item:#x} as an item, but {}: \
                 the item was freed while the container still owned it",
                why.describe()
            ),
        ),
        SiteState::Alive => (
            Severity::Note,
            format!(
                "{site_text}; its header looks alive (refcount {})",
                refcount.map_or_else(|| "unread".to_string(), |rc| rc.to_string())
            ),
        ),
    };
    let mut f = Finding::new(
        FindingKind::CrashSiteObject,
        severity,
        subject,
        None,
        message,
    )
    .with("function", site.function.as_str())
    .with("native_frame", site.frame as u64)
    .with("role", site.role.as_str())
    .with("recovered_from", site.recovered.to_string())
    .with("type_name", subject_type);
    f = match state {
        SiteState::Dead(why) => why.record(f),
        SiteState::NotAPointerItem(item) => {
            let f = f.with("bad_item", item);
            match refcount {
                Some(rc) => f.with("refcount", rc),
                None => f,
            }
        }
        SiteState::FreedItem(_, why) => why.record(f.with("container", address)),
        SiteState::Alive => match refcount {
            Some(rc) => f.with("refcount", rc),
            None => f,
        },
    };
    f.referrers = referrers;
    f
}

/// The type a freed block's stale `ob_type` names, or "object" when that is
/// no type (never the garbage it points at).
fn name_of(heap: &ReadContext, obj: u64, why: DeadHeader) -> String {
    match why {
        DeadHeader::NotAType(_) => "object".to_string(),
        _ => heap
            .objects
            .type_name(obj)
            .unwrap_or_else(|_| "object".into()),
    }
}

/// Whether `address` lies in the mapping of a thread's stack: a register
/// pointing there holds a local buffer or a saved frame, never a heap object
/// (objects on a C stack are static-lifetime fakes no dealloc frees).
fn on_a_thread_stack(process: &Process, address: u64) -> bool {
    let core = process.core();
    let Some(segment) = core.segment_index(address) else {
        return false;
    };
    core.threads()
        .iter()
        .any(|t| core.segment_index(t.registers.sp()) == Some(segment))
}
