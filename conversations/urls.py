from django.urls import path

from . import views

urlpatterns = [
    path("conversations/", views.conversation_list, name="conversations"),
    path("conversations/<str:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("conversations/<str:conversation_id>/delete/", views.conversation_remove, name="conversation-delete"),
]
