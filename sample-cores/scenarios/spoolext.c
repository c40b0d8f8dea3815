/* spoolext: a small C extension with the three reference-counting bugs of a
 * real spooler binding, for the "spool" scenarios.  Built by generate.py for
 * each interpreter against its own headers (Python 2.7 and 3.6+).
 *
 *   release(obj)      drops a reference the caller still owns (an extra
 *                     Py_DECREF on an argument);
 *   first_item(list)  returns the list's first item borrowed, without the
 *                     Py_INCREF a new reference needs;
 *   remember(i, obj)  keeps obj in slot i of a static array without a
 *                     reference of its own;
 *   recall(i)         hands slot i out again (a new reference to whatever
 *                     now lives at that address);
 *   remembered(i)     slot i's pointer, as an int (0 when unset);
 *   slot_address(i)   where slot i itself lives (in the module's .bss).
 */
#include <Python.h>

#define SPOOL_SLOTS 16

/* Kept without a reference: once the caller drops its last reference, a
 * slot points into freed memory.  External linkage so the symbol table names
 * it (a forensic tool can then say which module's static holds the block). */
PyObject *spool_last_jobs[SPOOL_SLOTS];

static int
spool_slot(PyObject *args, Py_ssize_t *slot, PyObject **obj)
{
    if (obj != NULL) {
        if (!PyArg_ParseTuple(args, "nO", slot, obj))
            return -1;
    } else if (!PyArg_ParseTuple(args, "n", slot)) {
        return -1;
    }
    if (*slot < 0 || *slot >= SPOOL_SLOTS) {
        PyErr_SetString(PyExc_IndexError, "spool slot out of range");
        return -1;
    }
    return 0;
}

static PyObject *
spool_release(PyObject *self, PyObject *obj)
{
    (void)self;
    Py_DECREF(obj); /* BUG: the caller's reference, not ours */
    Py_RETURN_NONE;
}

static PyObject *
spool_first_item(PyObject *self, PyObject *list)
{
    (void)self;
    if (!PyList_Check(list) || PyList_GET_SIZE(list) == 0) {
        PyErr_SetString(PyExc_TypeError, "first_item wants a non-empty list");
        return NULL;
    }
    return PyList_GET_ITEM(list, 0); /* BUG: borrowed, returned as new */
}

static PyObject *
spool_remember(PyObject *self, PyObject *args)
{
    Py_ssize_t slot;
    PyObject *obj;
    (void)self;
    if (spool_slot(args, &slot, &obj) < 0)
        return NULL;
    spool_last_jobs[slot] = obj; /* BUG: no Py_INCREF */
    Py_RETURN_NONE;
}

static PyObject *
spool_recall(PyObject *self, PyObject *args)
{
    Py_ssize_t slot;
    (void)self;
    if (spool_slot(args, &slot, NULL) < 0)
        return NULL;
    if (spool_last_jobs[slot] == NULL)
        Py_RETURN_NONE;
    Py_INCREF(spool_last_jobs[slot]);
    return spool_last_jobs[slot];
}

static PyObject *
spool_remembered(PyObject *self, PyObject *args)
{
    Py_ssize_t slot;
    (void)self;
    if (spool_slot(args, &slot, NULL) < 0)
        return NULL;
    return PyLong_FromSize_t((size_t)spool_last_jobs[slot]);
}

static PyObject *
spool_slot_address(PyObject *self, PyObject *args)
{
    Py_ssize_t slot;
    (void)self;
    if (spool_slot(args, &slot, NULL) < 0)
        return NULL;
    return PyLong_FromSize_t((size_t)&spool_last_jobs[slot]);
}

static PyMethodDef spool_methods[] = {
    {"release", spool_release, METH_O, "Drop a reference the caller still owns."},
    {"first_item", spool_first_item, METH_O, "A list's first item, borrowed."},
    {"remember", spool_remember, METH_VARARGS, "Keep obj in a slot without a reference."},
    {"recall", spool_recall, METH_VARARGS, "A slot's object, as a new reference."},
    {"remembered", spool_remembered, METH_VARARGS, "A slot's pointer value."},
    {"slot_address", spool_slot_address, METH_VARARGS, "Where a slot lives."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef spool_module = {
    PyModuleDef_HEAD_INIT, "spoolext", "Reference-counting bugs on purpose.", -1, spool_methods,
};

PyMODINIT_FUNC
PyInit_spoolext(void)
{
    return PyModule_Create(&spool_module);
}
#else
PyMODINIT_FUNC
initspoolext(void)
{
    Py_InitModule3("spoolext", spool_methods, "Reference-counting bugs on purpose.");
}
#endif
