"""DRF serializer base classes every app's API uses."""

import copy

from rest_framework import serializers


# A serializer's fields, built once per class instead of once per instance.
#
# DRF deep-copies the declared fields for every serializer instance, and a ModelSerializer also
# derives its other fields from the model each time (introspection, field kwargs, unique
# validators): about a third of the CPU of a small read such as /me/. What gets built depends on
# the class alone (its declarations, Meta and the model), so the first build is kept and each
# instance gets its own copies of those unbound fields (see _field_copy).
# (Comments, not docstrings: drf-spectacular would show an inherited docstring in the OpenAPI
# description of every serializer that has none of its own.)
class _FieldsBuiltOnce:
    def get_fields(self):
        cls = type(self)
        built = cls.__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            cls._built_fields = built
        return {name: _field_copy(field) for name, field in built.items()}


class Serializer(_FieldsBuiltOnce, serializers.Serializer):
    pass


class ModelSerializer(_FieldsBuiltOnce, serializers.ModelSerializer):
    pass


def _field_copy(field):
    """A field of its own for one serializer instance. A field that holds other fields or
    per-use state (a nested serializer, a list/dict field's `child`, a many-related field's
    `child_relation`) or a mutable default (handed out as is by get_default) is deep-copied, as
    DRF copies declared fields. Any other field is only configured in __init__ and then bound
    (bind() sets field_name, parent, label, source on the copy), so a shallow copy is as good and
    costs a tenth of DRF's re-construction."""
    if (isinstance(field, serializers.BaseSerializer) or hasattr(field, "child") or hasattr(field, "child_relation")
            or isinstance(field.default, list | dict | set)):
        return copy.deepcopy(field)
    return copy.copy(field)
