"""Admin for every rollout model. Rollout state, overrides and tokens change through the console
or the API (audited, revision-checked), so here they are read-only; the audit log can be read
and never edited or deleted."""

from django.contrib import admin, messages

from . import services
from .models import (
    ApiToken,
    AuditEntry,
    ChannelOverride,
    ChecklistTick,
    ConfigState,
    Phase,
    Rollout,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A model shown, never added, changed or deleted here (metrics' admin uses it too)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


ADMIN_REASON = "edited in the admin"


def _admin_actor(request) -> services.Actor:
    return services.Actor.of_user(request.user, via="admin")


class PhaseInline(admin.TabularInline):
    model = Phase
    extra = 0
    fields = ("order", "name", "percentage", "min_watch", "max_watch")


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "name",
        "enabled",
        "percentage",
        "simplified_percentage",
        "strategy",
        "current_phase",
        "revision",
    )
    readonly_fields = (
        "enabled",
        "percentage",
        "simplified_percentage",
        "strategy",
        "current_phase",
        "phase_started_at",
        "revision",
        "created_at",
        "updated_at",
    )
    inlines = [PhaseInline]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("revision", "created_at", "updated_at", "current_phase", "phase_started_at")
        return self.readonly_fields + (
            "key",
            "salt",
            "control_variant",
            "treatment_variant",
            "simplified_variant",
        )

    def has_delete_permission(self, request, obj=None):
        return False

    def save_formset(self, request, form, formset, change):
        """Phases through the service, so each change is audited (PHASE_EDIT)."""
        if formset.model is not Phase:
            return super().save_formset(request, form, formset, change)
        phases = formset.save(commit=False)
        for phase in formset.deleted_objects:
            services.delete_phase(phase, actor=_admin_actor(request), reason=ADMIN_REASON)
        for phase in phases:
            services.save_phase(phase, actor=_admin_actor(request), reason=ADMIN_REASON)
        formset.save_m2m()


@admin.register(Phase)
class PhaseAdmin(admin.ModelAdmin):
    """Every save and delete goes through the service and is audited."""

    list_display = ("rollout", "order", "name", "percentage", "min_watch", "max_watch")
    list_filter = ("rollout",)

    def save_model(self, request, obj, form, change):
        services.save_phase(obj, actor=_admin_actor(request), reason=ADMIN_REASON)

    def delete_model(self, request, obj):
        services.delete_phase(obj, actor=_admin_actor(request), reason=ADMIN_REASON)

    def delete_queryset(self, request, queryset):
        for phase in queryset:
            services.delete_phase(phase, actor=_admin_actor(request), reason=ADMIN_REASON)


@admin.register(ChannelOverride)
class ChannelOverrideAdmin(ReadOnlyAdmin):
    list_display = ("rollout", "channel_id", "variant", "created_by", "created_at", "expires_at")
    list_filter = ("rollout", "variant")
    search_fields = ("channel_id", "reason")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "rollout", "action", "actor", "via", "revision", "reason")
    list_filter = ("rollout", "action", "via")
    search_fields = ("actor", "reason")


@admin.register(ChecklistTick)
class ChecklistTickAdmin(ReadOnlyAdmin):
    list_display = ("phase", "item", "checked_by", "checked_at")


@admin.register(ConfigState)
class ConfigStateAdmin(ReadOnlyAdmin):
    list_display = ("revision", "updated_at")


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "hint",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ["revoke"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # lets the revoke action run on the list page

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            services.revoke_api_token(
                token, actor=services.Actor.of_user(request.user, via="admin")
            )
        messages.success(request, f"Revoked {queryset.count()} token(s).")
