"""Stored conversations for support: metadata only; message content is shown on an explicit, audited view."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdmin
from accounts.audit import audit_record

from .models import Conversation, Message


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "api_key", "message_count", "created_at", "last_activity_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant", "api_key")
    search_fields = ("id", "tenant__slug")
    date_hierarchy = "last_activity_at"
    fields = ("id", "tenant", "api_key", "metadata", "message_count", "created_at", "last_activity_at", "messages")
    readonly_fields = fields

    @admin.display(description="Messages")
    def messages(self, conversation):
        url = reverse("admin:conversations_conversation_messages", args=[conversation.pk])
        return format_html('<a href="{}">Show the {} messages</a> (your viewing is recorded in the audit log)',
                           url, conversation.message_count)

    def get_urls(self):
        view = self.admin_site.admin_view(self.messages_view)
        return [path("<str:conversation_id>/messages/", view, name="conversations_conversation_messages"),
                *super().get_urls()]

    def messages_view(self, request, conversation_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        conversation = get_object_or_404(Conversation.objects.select_related("tenant"), pk=conversation_id)
        audit_record(action="conversation.view", via="admin", actor=request.user, tenant=conversation.tenant,
                     details={"conversation": conversation.pk})
        context = {**self.admin_site.each_context(request), "title": f"Messages of {conversation.pk}",
                   "conversation": conversation, "opts": self.model._meta,
                   "messages_list": Message.objects.filter(conversation=conversation).order_by("seq")}
        return TemplateResponse(request, "admin/conversations/messages.html", context)
