//! A stored backup read in place: object format 1 (see `object`) walked without allocating,
//! every string a slice of the stored bytes, every list read as it is iterated.
//!
//! The renderer reads backups this way: a plain-text scrape renders each backup once per
//! family, and decoding into owned `model::Backup`s (a dozen allocations each) would cost more
//! than the text it makes. `BackupView::parse` accepts exactly what `decode_backup` accepts,
//! except that strings are not checked for UTF-8 here: `BackupView::strings` hands every one
//! to a caller that checks them once, when the backup is stored (tests hold the two readers
//! to the same fields).

use super::object::{backup_status_of, namespace_status_of, OBJECT_V1};
use super::RecordError;
use crate::model::{BackupStatus, NamespaceStatus, Timestamp};

/// Reads the fields of object format 1 from the front of a byte slice. A read past the end
/// or of a code no table has marks the reader bad (the first failure is kept) and gives a
/// default: `BackupView::parse` checks once at the end, so the hot path (a plain-text scrape
/// reads every backup once per family) carries no error through each of its dozens of reads.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    bad: Option<Bad>,
}

/// The first thing that was wrong (a few bytes: readers are copied from section to section).
#[derive(Clone, Copy, Debug)]
enum Bad {
    Truncated,
    Code(Table, u8),
}

#[derive(Clone, Copy, Debug)]
enum Table {
    OptionTag,
    BackupStatus,
    NamespaceStatus,
}

impl From<Bad> for RecordError {
    fn from(b: Bad) -> RecordError {
        let what = |t| match t {
            Table::OptionTag => "option tag",
            Table::BackupStatus => "backup status",
            Table::NamespaceStatus => "namespace status",
        };
        match b {
            Bad::Truncated => RecordError::Truncated,
            Bad::Code(table, code) => RecordError::UnknownCode {
                what: what(table),
                code,
            },
        }
    }
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            at: 0,
            bad: None,
        }
    }

    #[cold]
    fn fail(&mut self, why: Bad) {
        self.bad.get_or_insert(why);
        self.at = self.bytes.len();
    }

    #[inline]
    fn byte(&mut self) -> u8 {
        match self.bytes.get(self.at) {
            Some(&b) => {
                self.at += 1;
                b
            }
            None => {
                self.fail(Bad::Truncated);
                0
            }
        }
    }

    /// An unsigned LEB128 varint of at most 64 bits, as postcard writes integers and lengths.
    #[inline]
    fn varint(&mut self) -> u64 {
        match self.bytes.get(self.at) {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                u64::from(b)
            }
            _ => self.long_varint(),
        }
    }

    /// A varint of more than one byte (sizes, times): the next eight bytes looked at as one
    /// word when there are eight, byte by byte otherwise.
    fn long_varint(&mut self) -> u64 {
        if let Some(word) = self
            .bytes
            .get(self.at..)
            .and_then(|rest| rest.first_chunk::<8>())
        {
            let word = u64::from_le_bytes(*word);
            // A byte without its high bit ends the varint.
            let ends = !word & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = ends.trailing_zeros() as usize / 8 + 1;
                // The varint's bytes, their 7-bit groups packed together in three steps.
                let mut x = (word & (u64::MAX >> (64 - 8 * len))) & 0x7f7f_7f7f_7f7f_7f7f;
                x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
                x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
                x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
                self.at += len;
                return x;
            }
        }
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.byte();
            let bits = u64::from(b & 0x7f);
            // The tenth byte holds the 64th bit only.
            if self.bad.is_some() || (i == 9 && bits > 1) {
                break;
            }
            value |= bits << (7 * i);
            if b < 0x80 {
                return value;
            }
        }
        self.fail(Bad::Truncated);
        0
    }

    #[inline]
    fn zigzag(&mut self) -> i64 {
        let v = self.varint();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    #[inline]
    fn string(&mut self) -> &'a [u8] {
        let n = self.varint();
        let end = usize::try_from(n).ok().and_then(|n| self.at.checked_add(n));
        match end.and_then(|end| Some((end, self.bytes.get(self.at..end)?))) {
            Some((end, s)) => {
                self.at = end;
                s
            }
            None => {
                self.fail(Bad::Truncated);
                &[]
            }
        }
    }

    /// A list's length: no more elements than bytes left (each takes at least one).
    #[inline]
    fn len(&mut self) -> usize {
        let n = self.varint();
        match usize::try_from(n) {
            Ok(n) if n <= self.bytes.len() - self.at => n,
            _ => {
                self.fail(Bad::Truncated);
                0
            }
        }
    }

    #[inline]
    fn option<T>(&mut self, read: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match self.byte() {
            0 => None,
            1 => Some(read(self)),
            code => {
                self.fail(Bad::Code(Table::OptionTag, code));
                None
            }
        }
    }

    #[inline]
    fn opt_u64(&mut self) -> Option<u64> {
        self.option(Self::varint)
    }

    /// A code of one of the frozen tables; one it does not have marks the reader bad.
    #[inline]
    fn code<T>(&mut self, table: Table, lookup: fn(u8) -> Option<T>, otherwise: T) -> T {
        let code = self.byte();
        lookup(code).unwrap_or_else(|| {
            self.fail(Bad::Code(table, code));
            otherwise
        })
    }

    #[inline]
    fn backup_status(&mut self) -> BackupStatus {
        self.code(Table::BackupStatus, backup_status_of, BackupStatus::Invalid)
    }

    #[inline]
    fn opt_backup_status(&mut self) -> Option<BackupStatus> {
        self.option(Self::backup_status)
    }

    #[inline]
    fn namespace_status(&mut self) -> NamespaceStatus {
        self.code(
            Table::NamespaceStatus,
            namespace_status_of,
            NamespaceStatus::Invalid,
        )
    }

    /// A list that is the last thing read: its elements are read as it is iterated, not
    /// walked now to find where it ends (only a backup already checked is read this way).
    #[inline]
    fn list_in_place<T: Element<'a>>(&mut self) -> List<'a, T> {
        let len = self.len();
        List {
            bytes: self.bytes.get(self.at..).unwrap_or_default(),
            len,
            _element: std::marker::PhantomData,
        }
    }

    /// A list: its length, then its elements, each checked by reading it once.
    #[inline]
    fn list<T: Element<'a>>(&mut self) -> List<'a, T> {
        let len = self.len();
        let start = self.at;
        for _ in 0..len {
            T::read(self);
        }
        List {
            bytes: self.bytes.get(start..self.at).unwrap_or_default(),
            len: if self.bad.is_some() { 0 } else { len },
            _element: std::marker::PhantomData,
        }
    }
}

/// An element of a list in object format 1.
pub trait Element<'a>: Sized {
    #[doc(hidden)]
    fn read(r: &mut Reader<'a>) -> Self;
}

impl<'a> Element<'a> for &'a [u8] {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        r.string()
    }
}

/// A list read in place; its elements were checked when the backup was parsed, and are read
/// again as they are iterated.
#[derive(Clone, Copy)]
pub struct List<'a, T> {
    bytes: &'a [u8],
    len: usize,
    _element: std::marker::PhantomData<T>,
}

impl<T> Default for List<'_, T> {
    fn default() -> Self {
        List {
            bytes: &[],
            len: 0,
            _element: std::marker::PhantomData,
        }
    }
}

impl<'a, T: Element<'a>> List<'a, T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter {
            reader: Reader::new(self.bytes),
            left: self.len,
            _element: std::marker::PhantomData,
        }
    }
    /// The only element, when there is exactly one.
    pub fn single(&self) -> Option<T> {
        if self.len == 1 {
            self.iter().next()
        } else {
            None
        }
    }
}

impl<'a, T: Element<'a>> IntoIterator for List<'a, T> {
    type Item = T;
    type IntoIter = ListIter<'a, T>;
    fn into_iter(self) -> ListIter<'a, T> {
        self.iter()
    }
}

impl<'a, T: Element<'a>> IntoIterator for &List<'a, T> {
    type Item = T;
    type IntoIter = ListIter<'a, T>;
    fn into_iter(self) -> ListIter<'a, T> {
        self.iter()
    }
}

pub struct ListIter<'a, T> {
    reader: Reader<'a>,
    left: usize,
    _element: std::marker::PhantomData<T>,
}

impl<'a, T: Element<'a>> Iterator for ListIter<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Every element was read once when the backup was parsed: this cannot fail.
        Some(T::read(&mut self.reader))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// `model::Volume`, in place.
#[derive(Clone, Copy)]
pub struct VolumeView<'a> {
    pub volume: &'a [u8],
    pub pvc: &'a [u8],
    pub pvc_namespace: &'a [u8],
    pub storage_class: &'a [u8],
    pub driver: &'a [u8],
    pub status: Option<BackupStatus>,
}

impl<'a> Element<'a> for VolumeView<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        VolumeView {
            volume: r.string(),
            pvc: r.string(),
            pvc_namespace: r.string(),
            storage_class: r.string(),
            driver: r.string(),
            status: r.opt_backup_status(),
        }
    }
}

/// `model::VirtualMachine`, in place.
#[derive(Clone, Copy)]
pub struct VirtualMachineView<'a> {
    pub name: &'a [u8],
    pub namespace: &'a [u8],
    pub os_name: &'a [u8],
    pub status: Option<BackupStatus>,
}

impl<'a> Element<'a> for VirtualMachineView<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        VirtualMachineView {
            name: r.string(),
            namespace: r.string(),
            os_name: r.string(),
            status: r.opt_backup_status(),
        }
    }
}

/// `model::VmResource`, in place.
#[derive(Clone, Copy)]
pub struct VmResourceView<'a> {
    pub group: &'a [u8],
    pub version: &'a [u8],
    pub kind: &'a [u8],
    pub name: &'a [u8],
    pub namespace: &'a [u8],
    pub virtual_machines: List<'a, &'a [u8]>,
}

impl<'a> Element<'a> for VmResourceView<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        VmResourceView {
            group: r.string(),
            version: r.string(),
            kind: r.string(),
            name: r.string(),
            namespace: r.string(),
            virtual_machines: r.list(),
        }
    }
}

/// `model::NamespaceResources`, in place.
#[derive(Clone, Copy)]
pub struct NamespaceResourcesView<'a> {
    pub namespace: &'a [u8],
    pub status: Option<NamespaceStatus>,
    pub total_resources: Option<u64>,
    pub total_volumes: Option<u64>,
    pub failed_resources: Option<u64>,
    pub failed_volumes: Option<u64>,
    pub resource_types: List<'a, ResourceTypeView<'a>>,
}

impl<'a> Element<'a> for NamespaceResourcesView<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        NamespaceResourcesView {
            namespace: r.string(),
            status: r.option(Reader::namespace_status),
            total_resources: r.opt_u64(),
            total_volumes: r.opt_u64(),
            failed_resources: r.opt_u64(),
            failed_volumes: r.opt_u64(),
            resource_types: r.list(),
        }
    }
}

/// `model::ResourceType`, in place.
#[derive(Clone, Copy)]
pub struct ResourceTypeView<'a> {
    pub name: &'a [u8],
    pub total_resources: Option<u64>,
    pub failed_resources: Option<u64>,
}

impl<'a> Element<'a> for ResourceTypeView<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Self {
        ResourceTypeView {
            name: r.string(),
            total_resources: r.opt_u64(),
            failed_resources: r.opt_u64(),
        }
    }
}

/// The identity of a stored backup: the first section of object format 1.
#[derive(Clone, Copy, Default)]
pub struct Head<'a> {
    pub uid: &'a [u8],
    pub name: &'a [u8],
    pub org_id: &'a [u8],
    pub cluster: &'a [u8],
    pub cluster_uid: &'a [u8],
    pub schedule_name: &'a [u8],
}

/// What follows the identity: namespaces, location and status.
#[derive(Clone, Copy, Default)]
pub struct Summary<'a> {
    pub namespaces: List<'a, &'a [u8]>,
    pub backup_location: &'a [u8],
    pub backup_object_type: &'a [u8],
    pub status: BackupStatus,
}

/// The backup's size and resource count, before its volumes.
#[derive(Clone, Copy, Default)]
pub struct Totals {
    pub size_bytes: Option<u64>,
    pub resource_count: Option<u64>,
}

/// The times and failure counts, after the volumes.
#[derive(Clone, Copy, Default)]
pub struct Times {
    pub created_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub failed_resource_count: Option<u64>,
    pub failed_volume_count: Option<u64>,
}

/// The lists of VMs and namespaces, last.
#[derive(Clone, Copy, Default)]
pub struct Parts<'a> {
    pub virtual_machines: List<'a, VirtualMachineView<'a>>,
    pub vm_resources: List<'a, VmResourceView<'a>>,
    pub namespace_resources: List<'a, NamespaceResourcesView<'a>>,
}

/// Where each section of a stored backup starts (byte offsets into it), found when it is read
/// whole, so that a reader goes straight to the section it needs: a plain-text scrape reads
/// every backup once per family, and most families need one section of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sections {
    summary: u32,
    totals: u32,
    volumes: u32,
    times: u32,
    parts: u32,
}

impl<'a> Head<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Head<'a> {
        Head {
            uid: r.string(),
            name: r.string(),
            org_id: r.string(),
            cluster: r.string(),
            cluster_uid: r.string(),
            schedule_name: r.string(),
        }
    }
}

impl<'a> Summary<'a> {
    #[inline]
    fn read(r: &mut Reader<'a>) -> Summary<'a> {
        Summary {
            namespaces: r.list(),
            backup_location: r.string(),
            backup_object_type: r.string(),
            status: r.backup_status(),
        }
    }
}

impl Totals {
    #[inline]
    fn read(r: &mut Reader<'_>) -> Totals {
        Totals {
            size_bytes: r.opt_u64(),
            resource_count: r.opt_u64(),
        }
    }
}

impl Times {
    #[inline]
    fn read(r: &mut Reader<'_>) -> Times {
        Times {
            created_at: r.option(Reader::zigzag).map(Timestamp),
            completed_at: r.option(Reader::zigzag).map(Timestamp),
            failed_resource_count: r.opt_u64(),
            failed_volume_count: r.opt_u64(),
        }
    }
}

impl<'a> Parts<'a> {
    /// The last section; fields a later build appended after it are not read.
    #[inline]
    fn read(r: &mut Reader<'a>) -> Parts<'a> {
        Parts {
            virtual_machines: r.list(),
            vm_resources: r.list(),
            namespace_resources: r.list(),
        }
    }
}

/// The object version byte comes first; the identity right after it.
const HEAD_AT: usize = 1;

impl Sections {
    fn reader<'a>(object: &'a [u8], at: u32) -> Reader<'a> {
        let mut r = Reader::new(object);
        r.at = usize::try_from(at).unwrap_or(usize::MAX).min(object.len());
        r
    }

    /// A backup's own two identity labels (its uid and name), the first two fields.
    #[inline]
    pub fn own<'a>(&self, object: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let mut r = Sections::reader(object, HEAD_AT as u32);
        let uid = r.string();
        (uid, r.string())
    }
    #[inline]
    pub fn head<'a>(&self, object: &'a [u8]) -> Head<'a> {
        Head::read(&mut Sections::reader(object, HEAD_AT as u32))
    }
    #[inline]
    pub fn summary<'a>(&self, object: &'a [u8]) -> Summary<'a> {
        Summary::read(&mut Sections::reader(object, self.summary))
    }
    #[inline]
    pub fn totals(&self, object: &[u8]) -> Totals {
        Totals::read(&mut Sections::reader(object, self.totals))
    }
    #[inline]
    pub fn volumes<'a>(&self, object: &'a [u8]) -> List<'a, VolumeView<'a>> {
        Sections::reader(object, self.volumes).list_in_place()
    }
    #[inline]
    pub fn times(&self, object: &[u8]) -> Times {
        Times::read(&mut Sections::reader(object, self.times))
    }
    #[inline]
    pub fn parts<'a>(&self, object: &'a [u8]) -> Parts<'a> {
        Parts::read(&mut Sections::reader(object, self.parts))
    }
}

/// `model::Backup`, in place: the same fields, strings as the stored bytes, by section.
#[derive(Clone, Copy, Default)]
pub struct BackupView<'a> {
    pub head: Head<'a>,
    pub summary: Summary<'a>,
    pub totals: Totals,
    pub volumes: List<'a, VolumeView<'a>>,
    pub times: Times,
    pub parts: Parts<'a>,
    /// Where each section starts.
    pub sections: Sections,
}

impl<'a> BackupView<'a> {
    /// Reads what `encode_backup` wrote (by this build or a later one: trailing fields this
    /// build does not know are ignored, as `decode_backup` ignores them).
    pub fn parse(bytes: &'a [u8]) -> Result<BackupView<'a>, RecordError> {
        let mut r = Reader::new(bytes);
        match r.byte() {
            OBJECT_V1 => {}
            _ if r.bad.is_some() => return Err(RecordError::Truncated),
            v => return Err(RecordError::UnknownObjectVersion(v)),
        }
        // Offsets past u32 are never read: a backup is at most a journal record, far smaller.
        let at = |r: &Reader<'_>| u32::try_from(r.at).unwrap_or(u32::MAX);
        let head = Head::read(&mut r);
        let summary_at = at(&r);
        let summary = Summary::read(&mut r);
        let totals_at = at(&r);
        let totals = Totals::read(&mut r);
        let volumes_at = at(&r);
        let volumes = r.list();
        let times_at = at(&r);
        let times = Times::read(&mut r);
        let parts_at = at(&r);
        let parts = Parts::read(&mut r);
        if let Some(bad) = r.bad {
            return Err(bad.into());
        }
        Ok(BackupView {
            head,
            summary,
            totals,
            volumes,
            times,
            parts,
            sections: Sections {
                summary: summary_at,
                totals: totals_at,
                volumes: volumes_at,
                times: times_at,
                parts: parts_at,
            },
        })
    }

    /// `parse`, and every string checked for UTF-8: accepts exactly what `decode_backup`
    /// accepts.
    pub fn parse_checked(bytes: &'a [u8]) -> Result<BackupView<'a>, RecordError> {
        let view = BackupView::parse(bytes)?;
        let mut utf8 = true;
        view.strings(|s| utf8 &= std::str::from_utf8(s).is_ok());
        if utf8 {
            Ok(view)
        } else {
            Err(RecordError::NotUtf8)
        }
    }

    /// Every string of the backup, each once, for a caller that checks them all (UTF-8, and
    /// whatever a writer needs to know about them).
    pub fn strings(&self, mut each: impl FnMut(&'a [u8])) {
        let (h, s) = (&self.head, &self.summary);
        for s in [
            h.uid,
            h.name,
            h.org_id,
            h.cluster,
            h.cluster_uid,
            h.schedule_name,
            s.backup_location,
            s.backup_object_type,
        ] {
            each(s);
        }
        s.namespaces.iter().for_each(&mut each);
        for v in &self.volumes {
            for s in [v.volume, v.pvc, v.pvc_namespace, v.storage_class, v.driver] {
                each(s);
            }
        }
        for vm in &self.parts.virtual_machines {
            for s in [vm.name, vm.namespace, vm.os_name] {
                each(s);
            }
        }
        for res in &self.parts.vm_resources {
            for s in [res.group, res.version, res.kind, res.name, res.namespace] {
                each(s);
            }
            res.virtual_machines.iter().for_each(&mut each);
        }
        for ns in &self.parts.namespace_resources {
            each(ns.namespace);
            for t in &ns.resource_types {
                each(t.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Backup, NamespaceResources, Owner, ResourceType, VirtualMachine, VmResource, Volume,
    };
    use crate::persistence::object::tests::full_backup;
    use crate::persistence::{decode_backup, encode_backup};

    fn s(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).expect("utf-8")
    }

    /// The owned backup the view shows: every field read through the view.
    fn owned(v: &BackupView<'_>) -> Backup {
        let (h, m, t, p) = (&v.head, &v.summary, &v.times, &v.parts);
        Backup {
            uid: s(h.uid),
            name: s(h.name),
            owner: Owner {
                org_id: s(h.org_id),
                cluster: s(h.cluster),
                cluster_uid: s(h.cluster_uid),
            },
            schedule_name: s(h.schedule_name),
            namespaces: m.namespaces.iter().map(s).collect(),
            backup_location: s(m.backup_location),
            backup_object_type: s(m.backup_object_type),
            status: m.status,
            size_bytes: v.totals.size_bytes,
            resource_count: v.totals.resource_count,
            volumes: v
                .volumes
                .iter()
                .map(|x| Volume {
                    volume: s(x.volume),
                    pvc: s(x.pvc),
                    pvc_namespace: s(x.pvc_namespace),
                    storage_class: s(x.storage_class),
                    driver: s(x.driver),
                    status: x.status,
                })
                .collect(),
            created_at: t.created_at,
            completed_at: t.completed_at,
            failed_resource_count: t.failed_resource_count,
            failed_volume_count: t.failed_volume_count,
            virtual_machines: p
                .virtual_machines
                .iter()
                .map(|x| VirtualMachine {
                    name: s(x.name),
                    namespace: s(x.namespace),
                    os_name: s(x.os_name),
                    status: x.status,
                })
                .collect(),
            vm_resources: p
                .vm_resources
                .iter()
                .map(|x| VmResource {
                    group: s(x.group),
                    version: s(x.version),
                    kind: s(x.kind),
                    name: s(x.name),
                    namespace: s(x.namespace),
                    virtual_machines: x.virtual_machines.iter().map(s).collect(),
                })
                .collect(),
            namespace_resources: p
                .namespace_resources
                .iter()
                .map(|x| NamespaceResources {
                    namespace: s(x.namespace),
                    status: x.status,
                    total_resources: x.total_resources,
                    total_volumes: x.total_volumes,
                    failed_resources: x.failed_resources,
                    failed_volumes: x.failed_volumes,
                    resource_types: x
                        .resource_types
                        .iter()
                        .map(|t| ResourceType {
                            name: s(t.name),
                            total_resources: t.total_resources,
                            failed_resources: t.failed_resources,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Backups of every shape: lists empty and long, options set and not, large integers,
    /// negative times, strings of every length around the one-byte varint limit.
    fn shapes() -> Vec<Backup> {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut out = vec![Backup::default(), full_backup()];
        for i in 0..300 {
            let mut b = full_backup();
            let text = |rng: &mut fastrand::Rng| -> String {
                let n = rng.usize(0..200);
                (0..n)
                    .map(|_| {
                        rng.choice(['a', 'é', '"', '\\', '\n', '-', '7', '✓'])
                            .unwrap()
                    })
                    .collect()
            };
            b.uid = text(&mut rng);
            b.name = "n".repeat(i);
            b.namespaces = (0..rng.usize(0..4)).map(|_| text(&mut rng)).collect();
            b.status = *rng.choice(BackupStatus::ALL).unwrap();
            b.size_bytes = rng.bool().then(|| rng.u64(..));
            b.resource_count = rng.bool().then(|| rng.u64(..1 << 14));
            b.created_at = rng.bool().then(|| Timestamp(rng.i64(..)));
            b.completed_at = rng.bool().then(|| Timestamp(rng.i64(-5..5)));
            b.volumes = (0..rng.usize(0..3))
                .map(|_| Volume {
                    volume: text(&mut rng),
                    status: rng.bool().then(|| *rng.choice(BackupStatus::ALL).unwrap()),
                    ..Volume::default()
                })
                .collect();
            if rng.bool() {
                b.virtual_machines.clear();
                b.vm_resources.clear();
            }
            if rng.bool() {
                b.namespace_resources[0].resource_types.push(ResourceType {
                    name: text(&mut rng),
                    total_resources: None,
                    failed_resources: Some(u64::MAX),
                });
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn the_view_reads_what_decode_reads() {
        for b in shapes() {
            let bytes = encode_backup(&b);
            let view = BackupView::parse(&bytes).expect("parses");
            assert_eq!(owned(&view), decode_backup(&bytes).expect("decodes"));
            assert_eq!(owned(&view), b);
        }
    }

    #[test]
    fn each_section_read_where_it_starts_is_what_the_whole_read_found() {
        for b in shapes() {
            let bytes = encode_backup(&b);
            let whole = BackupView::parse(&bytes).expect("parses");
            let at = whole.sections;
            let read = BackupView {
                head: at.head(&bytes),
                summary: at.summary(&bytes),
                totals: at.totals(&bytes),
                volumes: at.volumes(&bytes),
                times: at.times(&bytes),
                parts: at.parts(&bytes),
                sections: at,
            };
            assert_eq!(owned(&read), b);
            assert_eq!(at.own(&bytes), (whole.head.uid, whole.head.name));
        }
    }

    #[test]
    fn trailing_fields_of_a_later_build_are_ignored() {
        let mut bytes = encode_backup(&full_backup());
        bytes.extend_from_slice(&[0x05, b'e', b'x', b't', b'r', b'a', 0x01, 0x2a]);
        let view = BackupView::parse(&bytes).expect("parses");
        assert_eq!(owned(&view), full_backup());
    }

    #[test]
    fn what_decode_rejects_the_view_rejects() {
        let bytes = encode_backup(&full_backup());
        // Every truncation of a valid object.
        for end in 0..bytes.len() {
            assert_eq!(
                BackupView::parse(&bytes[..end]).is_err(),
                decode_backup(&bytes[..end]).is_err(),
                "cut at {end}"
            );
            assert!(BackupView::parse(&bytes[..end]).is_err(), "cut at {end}");
        }
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(matches!(
            BackupView::parse(&other),
            Err(RecordError::UnknownObjectVersion(2))
        ));
        // Every single byte changed to every value: where decode still decodes (a changed
        // string byte, an integer), the view reads the same backup; where it refuses, so does
        // the view, unless only UTF-8 broke (the view leaves strings to its caller's check).
        for at in 1..bytes.len() {
            for value in [0x00, 0x01, 0x02, 0x0b, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] = value;
                assert_eq!(
                    BackupView::parse_checked(&b).is_ok(),
                    decode_backup(&b).is_ok(),
                    "byte {at} = {value:#x}"
                );
                match (BackupView::parse(&b), decode_backup(&b)) {
                    (Ok(view), Ok(decoded)) => assert_eq!(owned(&view), decoded, "{at}={value}"),
                    (Err(_), Err(_)) => {}
                    (Ok(view), Err(_)) => {
                        let mut utf8 = true;
                        view.strings(|s| utf8 &= std::str::from_utf8(s).is_ok());
                        assert!(!utf8, "byte {at} = {value:#x}: only the view accepts it");
                    }
                    (Err(e), Ok(_)) => {
                        panic!("byte {at} = {value:#x}: only decode accepts it ({e})")
                    }
                }
            }
        }
    }

    #[test]
    fn strings_visits_every_string_once() {
        let b = full_backup();
        let bytes = encode_backup(&b);
        let view = BackupView::parse(&bytes).expect("parses");
        let mut seen = Vec::new();
        view.strings(|s| seen.push(String::from_utf8(s.to_vec()).expect("utf-8")));
        let mut expected = vec![
            b.uid.clone(),
            b.name.clone(),
            b.owner.org_id.clone(),
            b.owner.cluster.clone(),
            b.owner.cluster_uid.clone(),
            b.schedule_name.clone(),
            b.backup_location.clone(),
            b.backup_object_type.clone(),
        ];
        expected.extend(b.namespaces.iter().cloned());
        for v in &b.volumes {
            expected.extend(
                [
                    &v.volume,
                    &v.pvc,
                    &v.pvc_namespace,
                    &v.storage_class,
                    &v.driver,
                ]
                .map(Clone::clone),
            );
        }
        for vm in &b.virtual_machines {
            expected.extend([&vm.name, &vm.namespace, &vm.os_name].map(Clone::clone));
        }
        for r in &b.vm_resources {
            expected
                .extend([&r.group, &r.version, &r.kind, &r.name, &r.namespace].map(Clone::clone));
            expected.extend(r.virtual_machines.iter().cloned());
        }
        for ns in &b.namespace_resources {
            expected.push(ns.namespace.clone());
            expected.extend(ns.resource_types.iter().map(|t| t.name.clone()));
        }
        assert_eq!(seen, expected);
    }
}
