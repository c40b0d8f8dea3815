//! Reports cross to Python as their serde JSON form: plain dicts, lists,
//! strings, numbers, booleans and `None`, which `pymortem._model` turns
//! into dataclasses.

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList};
use serde::Serialize;
use serde_json::Value;

/// `value` as Python objects.
pub fn value_to_py(py: Python<'_>, value: &Value) -> PyResult<PyObject> {
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any().unbind(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                n.as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any().unbind(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, value_to_py(py, item)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

/// The serde JSON form of `value` (computed without the GIL).
pub fn json<T: Serialize>(value: &T) -> Value {
    // The report types serialize to JSON without fail (string keys only).
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `value` as Python objects, through its serde JSON form.
pub fn to_py<T: Serialize>(py: Python<'_>, value: &T) -> PyResult<PyObject> {
    value_to_py(py, &json(value))
}

/// `pymortem._model.build(kind, data)`: the dataclass of `kind` made from
/// the JSON form `data`.
pub fn model(py: Python<'_>, kind: &str, data: &Value) -> PyResult<PyObject> {
    static BUILD: GILOnceCell<PyObject> = GILOnceCell::new();
    let build = BUILD.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("pymortem._model")?.getattr("build")?.unbind())
    })?;
    let data = value_to_py(py, data)?;
    build.call1(py, (kind, data))
}
