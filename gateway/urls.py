from django.urls import path

from . import views

urlpatterns = [
    path("models/", views.models_prices, name="models-prices"),
    path("playground/", views.playground, name="playground"),
    path("playground/chat", views.playground_chat, name="playground-chat"),
    path("playground/usage/<str:request_id>", views.playground_usage, name="playground-usage"),
]
