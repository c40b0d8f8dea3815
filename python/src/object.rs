//! `Object`: one Python object in the core, read on demand.

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use pymortem::ObjectKind;

use crate::errors::IntoPy;
use crate::handles::Runtime;

/// A Python object at an address in the core: a cheap handle that reads
/// the core only when asked. Two handles are equal when their addresses
/// are.
///
/// Reading one object is bounded (items, characters, attributes) and keeps
/// the GIL: releasing it would cost more than the read. Long work (`inspect`,
/// and the walks of `Python`) releases it.
///
/// Reads that fail raise `pymortem.ReadError` (with `.address`), or
/// `pymortem.WrongType` when the object is not of the type an accessor
/// reads. `repr()` never fails: damage shows in it.
///
/// - `type_name`, `refcount`, `immortal`, `gc_state`, `kind`: its header;
/// - `len(obj)`: the length it records (tuple, list, dict, str, bytes…);
/// - `iter(obj)`, `obj[i]`: the items of a tuple or list, the keys of a dict;
/// - `items()`, `keys()`, `values()`: a dict's entries;
/// - `attributes`, `attribute(name)`: an instance's attributes;
/// - `value()`: the value of an int, bool, float, str, bytes or None.
#[pyclass(frozen, module = "pymortem", eq, hash)]
#[derive(Clone)]
pub struct Object {
    object: pymortem::Object,
    address: u64,
}

impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        self.address == other.address
    }
}

impl std::hash::Hash for Object {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.address.hash(state);
    }
}

impl Object {
    pub fn new(object: pymortem::Object) -> Object {
        Object {
            address: object.address(),
            object,
        }
    }

    fn wrap(objects: Vec<pymortem::Object>) -> Vec<Object> {
        objects.into_iter().map(Object::new).collect()
    }

    /// The items of a tuple or list, or the keys of a dict.
    fn members(&self) -> PyResult<Vec<Object>> {
        self.member_objects().py_err().map(Object::wrap)
    }

    fn member_objects(&self) -> Result<Vec<pymortem::Object>, pymortem::Error> {
        let object = &self.object;
        match object.kind()? {
            ObjectKind::Tuple => object.tuple_items(),
            ObjectKind::List => object.list_items(),
            ObjectKind::Dict => Ok(object
                .dict_entries()?
                .into_iter()
                .map(|(key, _)| key)
                .collect()),
            _ => Err(pymortem::Error::WrongType {
                address: object.address(),
                expected: "tuple, list or dict",
                found: object.type_name().unwrap_or_else(|_| "?".into()),
            }),
        }
    }

    fn entries(&self) -> PyResult<Vec<(Object, Object)>> {
        let object = &self.object;
        let entries = object.dict_entries().py_err()?;
        Ok(entries
            .into_iter()
            .map(|(k, v)| (Object::new(k), Object::new(v)))
            .collect())
    }
}

#[pymethods]
impl Object {
    /// Its address.
    #[getter]
    fn address(&self) -> u64 {
        self.address
    }

    /// The runtime it belongs to.
    #[getter]
    fn python(&self) -> Runtime {
        Runtime::of(self.object.python().clone())
    }

    /// Its type's name (`tuple`, `MyClass`, …).
    #[getter]
    fn type_name(&self) -> PyResult<String> {
        self.object.type_name().py_err()
    }

    /// Its type object.
    #[getter]
    fn r#type(&self) -> PyResult<Object> {
        self.object.type_object().py_err().map(Object::new)
    }

    /// Its reference count (`ob_refcnt`; on 3.12+ an immortal object's is
    /// the immortal marker: see `immortal`).
    #[getter]
    fn refcount(&self) -> PyResult<i64> {
        self.object.refcount().py_err().map(|r| r.value)
    }

    /// Whether its refcount marks it immortal (3.12+).
    #[getter]
    fn immortal(&self) -> PyResult<bool> {
        self.object.refcount().py_err().map(|r| r.immortal)
    }

    /// Its GC header's state: `"tracked"`, `"untracked"`, or None when its
    /// type has no GC header.
    #[getter]
    fn gc_state(&self) -> PyResult<Option<&'static str>> {
        self.object
            .gc_state()
            .py_err()
            .map(|s| s.map(|s| s.as_str()))
    }

    /// What it is, for typed access: `none`, `bool`, `int`, `float`, `str`,
    /// `bytes`, `tuple`, `list`, `dict`, `type` or `other`.
    #[getter]
    fn kind(&self) -> PyResult<&'static str> {
        self.object.kind().py_err().map(ObjectKind::name)
    }

    /// A short, bounded, Python-like repr of the object in the core; damage
    /// shows in it, it never fails.
    fn repr(&self) -> String {
        self.object.repr()
    }

    /// The length it records: items of a tuple, list or dict, characters
    /// of a str, bytes of a bytes.
    fn __len__(&self) -> PyResult<usize> {
        let length = self.object.length().py_err()?;
        Ok(usize::try_from(length).unwrap_or(usize::MAX))
    }

    /// The items of a tuple or list, the keys of a dict.
    fn __iter__(&self) -> PyResult<ObjectIterator> {
        Ok(ObjectIterator {
            items: self.members()?,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Item `index` of a tuple or list (negative counts from the end).
    fn __getitem__(&self, index: isize) -> PyResult<Object> {
        let items = self.members()?;
        let i = if index < 0 {
            index + items.len() as isize
        } else {
            index
        };
        usize::try_from(i)
            .ok()
            .and_then(|i| items.get(i).cloned())
            .ok_or_else(|| PyIndexError::new_err("index out of range"))
    }

    /// The (key, value) pairs of a dict, as `Object`s.
    fn items(&self) -> PyResult<Vec<(Object, Object)>> {
        self.entries()
    }

    /// The keys of a dict.
    fn keys(&self) -> PyResult<Vec<Object>> {
        Ok(self.entries()?.into_iter().map(|(k, _)| k).collect())
    }

    /// The values of a dict.
    fn values(&self) -> PyResult<Vec<Object>> {
        Ok(self.entries()?.into_iter().map(|(_, v)| v).collect())
    }

    /// An instance's attributes (its `__dict__`, inline values or slots),
    /// by name.
    #[getter]
    fn attributes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let object = &self.object;
        let attributes = object.attributes().py_err()?;
        let dict = PyDict::new(py);
        for a in attributes {
            dict.set_item(a.name, Object::new(a.value))?;
        }
        Ok(dict)
    }

    /// The attribute `name` of an instance, or None when it has none.
    fn attribute(&self, name: &str) -> PyResult<Option<Object>> {
        self.object
            .attribute(name)
            .py_err()
            .map(|a| a.map(Object::new))
    }

    /// Its value, for an int, bool, float, str, bytes or None (str and
    /// bytes are read up to a bound); raises `pymortem.WrongType` for any
    /// other kind.
    fn value(&self, py: Python<'_>) -> PyResult<PyObject> {
        let object = &self.object;
        let kind = object.kind().py_err()?;
        match kind {
            ObjectKind::None => Ok(py.None()),
            ObjectKind::Bool => {
                let v = object.int_value().py_err()?;
                (v != 0).into_py_any(py)
            }
            ObjectKind::Int => {
                let v = object.int_value().py_err()?;
                v.into_py_any(py)
            }
            ObjectKind::Float => {
                let v = object.float_value().py_err()?;
                v.into_py_any(py)
            }
            ObjectKind::Str => {
                let v = object.str_value().py_err()?;
                v.into_py_any(py)
            }
            ObjectKind::Bytes => {
                let v = object.bytes_value().py_err()?;
                Ok(PyBytes::new(py, &v).into_any().unbind())
            }
            _ => Err(crate::errors::to_py(pymortem::Error::WrongType {
                address: self.address,
                expected: "int, bool, float, str, bytes or None",
                found: object.type_name().unwrap_or_else(|_| "?".into()),
            })),
        }
    }

    /// Everything the checks can tell about it (see `Python.inspect`).
    fn inspect(&self, py: Python<'_>) -> PyResult<PyObject> {
        let object = &self.object;
        let info =
            py.allow_threads(|| crate::convert::json(&object.python().inspect(object.address())));
        crate::convert::value_to_py(py, &info)
    }

    fn __repr__(&self) -> String {
        format!("<pymortem.Object {:#x} {}>", self.address, self.repr())
    }
}

/// An iterator over a container's items.
#[pyclass(frozen, module = "pymortem")]
pub struct ObjectIterator {
    items: Vec<Object>,
    next: std::sync::atomic::AtomicUsize,
}

#[pymethods]
impl ObjectIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<Object> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.items.get(i).cloned()
    }
}
