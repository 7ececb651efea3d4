from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import Credential, Membership, Team, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "is_staff", "date_joined")
    search_fields = ("email",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at", "blocked_reason")
    inlines = [MembershipInline]


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """Never shows the ciphertext, let alone the token: only the mask."""

    list_display = ("team", "masked", "updated_at", "last_used_at", "last_error")
    fields = ("team", "masked", "workspace", "updated_at", "last_used_at", "last_error")
    readonly_fields = fields

    @admin.display(description="token")
    def masked(self, obj):
        return str(obj)

    def has_add_permission(self, request):
        return False
